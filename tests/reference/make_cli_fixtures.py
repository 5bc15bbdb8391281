"""Fixtures for tests/cli_commands.sh: a torch.save-shaped .pth whose data.pkl would run os.system when
unpickled by an unrestricted loader (the classic malicious checkpoint). It must be refused, not executed.

Run:  python3 tests/reference/make_cli_fixtures.py      (writes tests/fixtures/cli/evil_os_system.pth)
"""
import os
import pickle
import zipfile


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/modrwkv-pwned",))


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "fixtures", "cli", "evil_os_system.pth")
    payload = pickle.dumps({"emb.weight": Evil()}, protocol=2)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    print("wrote", out, len(payload), "byte pickle")


if __name__ == "__main__":
    main()
