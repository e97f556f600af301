"""The verbs of operating dogctl beyond the workflow: ``init`` (what an AWS account needs,
created once), ``resources`` (what still runs or bills), and the model registry's ``register``,
``approve`` and ``reject``. :mod:`orchestration.cli` dispatches them."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from dogbreed.errors import UserError

from .backend import Package, RegisterRequest, ResourcesRequest, ResourcesResult, ReviewRequest


def _backend(args: argparse.Namespace):  # the cli's one chooser (imported late: it imports this module)
    from .cli import choose_backend

    return choose_backend(args)


def cmd_resources(args: argparse.Namespace) -> int:
    return print_resources(_backend(args).resources(ResourcesRequest(every_prefix=args.all)))


def age(seconds: float) -> str:
    """``seconds`` as a short age: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def print_resources(result: ResourcesResult) -> int:
    if not result.found:
        print(f"resources: nothing of dogctl's runs or bills ({result.where})")
        return 0
    print(f"resources: {len(result.found)} running or billing ({result.where}):")
    now = time.time()
    rows = [(r.kind, r.name, r.status, age(now - r.since) if r.since else "", r.detail) for r in result.found]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + f"  {row[4]}".rstrip())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """`dogctl init --sagemaker`: bucket, repository, role and dogctl.toml (see
    :mod:`orchestration.sagemaker.account`)."""
    if not args.sagemaker:
        raise UserError("init sets up an AWS account for the --sagemaker verbs: `dogctl init --sagemaker`; "
                        "the local backend needs nothing set up (`make demo`)")
    from botocore.exceptions import BotoCoreError, ClientError

    from .sagemaker import Settings, account, policies
    from .sagemaker.settings import CONFIG_ENV, DEFAULT_CONFIG, AwsError

    settings = Settings.load({"bucket": args.bucket, "prefix": args.prefix, "region": args.region,
                              "tags": dict(args.tag)}, args.config, missing_ok=True)
    session = settings.session()
    path = args.config or Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    print(f"init: {'checking (--dry-run: nothing is changed)' if args.dry_run else 'checking'} "
          f"{session.region_name}", flush=True)
    try:
        names, _ = account.init(settings, session, path, bucket=args.bucket, role=args.role_name,
                                repository=args.repository, force=args.force, dry_run=args.dry_run,
                                emit=lambda s: print(f"init: {s.what:<10} {s.name}: {s.state}", flush=True))
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"AWS refused: {exc}") from exc
    documents = {"execution-role-trust": policies.trust(), "execution-role": policies.execution(names),
                 "caller": policies.caller(names), "init": policies.setup(names)}
    if args.dry_run:
        for name, document in documents.items():
            print(f"init: policy {name}:\n{json.dumps(document, indent=2)}")
        return 0
    folder = args.workdir / "sagemaker" / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        (folder / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"init: what you need to run dogctl and `make push`: {folder / 'caller.json'} (attach it to "
          f"your user or role); all four policies in {folder}")
    print("init: next: `make build push`, then `dogctl data --sagemaker` (a new role can take a few "
          "seconds before SageMaker accepts it)")
    return 0


def print_package(verb: str, package: Package) -> None:
    status = f"{package.previous} -> {package.status}" if package.previous else package.status
    print(f"{verb}: {package.id} (version {package.version} of {package.group}): {status}")
    if package.metrics:
        print(f"{verb}: metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(package.metrics.items())))
    if package.rules:
        print(f"{verb}: rules: " + ", ".join(f"{k} {v}" for k, v in sorted(package.rules.items())))


def cmd_register(args: argparse.Namespace) -> int:
    request = RegisterRequest(args.group, model=args.model, job=args.job, model_data=args.model_data,
                              description=args.description)
    package = _backend(args).register(request)
    print_package("register", package)
    where = " --sagemaker" if args.sagemaker else ""
    print(f"register: model {package.model}; `dogctl approve{where} {package.version} --group "
          f"{package.group}` approves it for `dogctl deploy{where} --package latest-approved`")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """approve or reject (``args.command``)."""
    request = ReviewRequest(args.package, args.command == "approve", args.group, args.note)
    print_package(args.command, _backend(args).review(request))
    return 0
