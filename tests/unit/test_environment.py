"""`stackllama env`: the report built from given facts (core/environment.py), and the command's JSON."""

import json

from stackllama_cli.core.environment import PACKAGES, cpu_from_cpuinfo, environment_report, render

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""
ACCELERATE_YAML = "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 8\n"


def facts(**overrides):
    base = dict(stackllama="0.1.0", python="3.11.7", system="Linux-x86_64",
                versions={**{name: "1.0" for name in PACKAGES}, "gguf": None}, cuda_available=True,
                cuda_version="12.8", gpus=[{"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0"}],
                gpu_bf16=True, cpuinfo=CPUINFO, cpu_cores=16, bnb_backend="CUDA",
                bnb_library="libbitsandbytes_cuda128.so", accelerate_config_path="/home/u/accelerate.yaml",
                accelerate_config_text=ACCELERATE_YAML,
                env={"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "hf_secret", "WANDB_API_KEY": "k", "PATH": "/bin"})
    return environment_report(**{**base, **overrides})


def test_cpu_flags_from_the_first_processor():
    cpu = cpu_from_cpuinfo(CPUINFO)
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+" and cpu["amx"] and cpu["amx_bf16"]
    assert cpu["amx_flags"] == ["amx_tile", "amx_bf16", "amx_int8"]
    plain = cpu_from_cpuinfo("model name : AMD EPYC 7B13\nflags : fpu avx2\n")
    assert plain["model"] == "AMD EPYC 7B13" and not plain["amx"] and not plain["amx_bf16"]
    assert cpu_from_cpuinfo("")["model"] is None


def test_report_has_what_a_bug_report_needs_and_no_secrets():
    report = facts()
    json.dumps(report)  # serialisable as is
    assert report["packages"]["gguf"] is None and report["packages"]["torch"] == "1.0"
    assert report["devices"]["gpu_count"] == 1 and report["devices"]["gpus"][0]["name"] == "NVIDIA H200"
    assert report["devices"]["gpu_bf16"] is True and report["devices"]["cpu"]["cores"] == 16
    assert report["devices"]["cpu_bf16_fast"] is True
    assert report["bitsandbytes"] == {"backend": "CUDA", "library": "libbitsandbytes_cuda128.so"}
    assert report["accelerate_config"]["contents"] == {"compute_environment": "LOCAL_MACHINE",
                                                       "distributed_type": "MULTI_GPU", "num_processes": 8}
    assert report["environment"] == {"CUDA_VISIBLE_DEVICES": "0"}  # tokens and keys never


def test_render_lines():
    lines = render(facts())
    text = "\n".join(lines)
    assert "gguf               not installed" in text
    assert "bitsandbytes       1.0 (backend CUDA, libbitsandbytes_cuda128.so)" in text
    assert "gpu 0              NVIDIA H200, 139.8 GiB, compute capability 9.0" in text
    assert "AMX yes (amx_tile, amx_bf16, amx_int8); bf16 on CPU fast" in text
    assert "  distributed_type: MULTI_GPU" in lines and "hf_secret" not in text
    cpu_only = "\n".join(render(facts(cuda_available=False, cuda_version=None, gpus=[], gpu_bf16=None,
                                      cpuinfo="model name : AMD EPYC\nflags : avx2\n",
                                      accelerate_config_text=None, versions={"torch": "2.13.0+cpu"})))
    assert "cuda               not available (a CPU build of torch)" in cpu_only
    assert "AMX no; bf16 on CPU slow (use fp32)" in cpu_only and "/home/u/accelerate.yaml (none)" in cpu_only
    assert "bitsandbytes       not installed" in cpu_only


def test_env_json_on_stdout_only(run_cli):
    result = run_cli("env", "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert report["packages"]["torch"] and report["devices"]["cpu"]["cores"] >= 1
    assert set(report) == {"stackllama", "python", "system", "packages", "devices", "bitsandbytes",
                           "accelerate_config", "environment"}
    human = run_cli("env")
    assert human.exit_code == 0 and human.stdout == "" and "transformers" in human.stderr
