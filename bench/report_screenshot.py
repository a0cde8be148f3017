"""Render a demo report in headless Chromium (no network) and save a full-page screenshot.

    python bench/report_screenshot.py runs/demo/report.html runs/demo/report.png

Needs Debian's chromium (`apt-get install chromium`). Network access is disabled, so
the screenshot shows that the file is self-contained.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    report, png = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        sys.exit("no chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               "--hide-scrollbars", "--window-size=1280,6400", f"--screenshot={png}", report.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not png.is_file():
        sys.exit(f"chromium did not write a screenshot:\n{proc.stderr[-2000:]}")
    print(f"wrote {png} ({png.stat().st_size} bytes) from {report}")


if __name__ == "__main__":
    main()
