"""`stackllama env`: what a bug report needs, for people (stderr) or as JSON (stdout)."""

from __future__ import annotations

from stackllama_cli.cli import options as o

COMMAND = dict(
    name="env",
    help="Show what a bug report needs: versions, GPUs and CPU (AMX or not), bitsandbytes' backend, "
    "accelerate's default config.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama env[/]                         paste its output into the issue

  [cyan]stackllama env --json > env.json[/]       the same facts as one JSON document on stdout

  [cyan]stackllama env --json | jq .devices[/]

Versions come from the installed packages' metadata; devices from torch; the CPU's model and AMX flags
(amx_bf16: bf16 is fast on this CPU; without it use fp32) from /proc/cpuinfo; the config from the file
`accelerate config` writes. Nothing is changed. A few environment variables that change a run
(CUDA_VISIBLE_DEVICES, HF_HOME, STACKLLAMA_*...) are listed; tokens and other secrets never are.""",
)


def command(json_out: o.Json = False) -> None:
    from rich.text import Text

    from stackllama_cli.core.console import console, print_json
    from stackllama_cli.core.environment import gather, render

    report = gather()
    if json_out:
        print_json(report)
        return
    for line in render(report):
        console.print(Text(line), soft_wrap=True)
