"""doctor under PLATFORM: whether this host can emulate it, and the machine the ranks ran on."""

from __future__ import annotations

from mpikit.doctor import judge


def ranks_on(*machines: str | None) -> list[dict]:
    return [{"rank": r, "size": len(machines), "machine": m} for r, m in enumerate(machines)]


def test_the_machine_the_ranks_ran_on() -> None:
    native = judge.machine(ranks_on("x86_64", "x86_64"), "linux/amd64", "linux/amd64")
    assert (native.level, native.text) == ("ok", "the ranks ran on x86_64 (linux/amd64, this host's own)")
    emulated = judge.machine(ranks_on("aarch64", "aarch64"), "linux/arm64", "linux/amd64")
    assert emulated.level == "ok" and emulated.text.startswith("the ranks ran on aarch64 (linux/arm64), emulated "
                                                               "by qemu-user on this linux/amd64 host")
    assert "not arm64 hardware" in emulated.text


def test_ranks_on_another_machine_than_platform_say_so() -> None:
    wrong = judge.machine(ranks_on("x86_64", "x86_64"), "linux/arm64", "linux/amd64")
    assert wrong.level == "PROBLEM" and "ran on x86_64, but PLATFORM=linux/arm64 is aarch64" in wrong.text
    assert wrong.fix.startswith("build it for this one: make image PLATFORM=linux/arm64")
    assert "ran on ?" in judge.machine(ranks_on(None), "linux/amd64", "linux/amd64").text


def test_emulation_registered_or_how_to_register_it() -> None:
    assert judge.emulation("linux/arm64", "linux/amd64", None).level == "ok"
    missing = judge.emulation("linux/arm64", "linux/amd64", "no qemu-aarch64 interpreter is registered")
    assert missing.level == "PROBLEM" and missing.fix == "as root: bash scripts/provision.sh emulation aarch64"


def test_cma_failing_only_because_qemu_lacks_the_syscall_is_labelled_emulation_only() -> None:
    enosys = [{"rank": 0}, {"rank": 1, "cma": "failed: process_vm_readv: Function not implemented (errno 38)"}]
    found = judge.cma("docker", enosys, emulated=True)
    assert [f.level for f in found] == ["info"] and found[0].text.startswith("emulation only: CMA single-copy")
    assert "qemu-user does not implement process_vm_readv" in found[0].text
    # Natively the same failure stays what it is; under emulation other failures do too.
    assert judge.cma("docker", enosys)[0].level == "PROBLEM"
    eperm = [{"rank": 1, "cma": "failed: process_vm_readv: Operation not permitted (errno 1)"}]
    assert judge.cma("docker", eperm, emulated=True)[0].level == "PROBLEM"
