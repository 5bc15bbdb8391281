"""The chat page of `modrwkv serve` in headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
type a message, watch the answer stream in, send a second turn (the conversation state is kept: the page shows
how many prompt tokens were kept from earlier turns), attach an image, and save a screenshot.

  test_page.py --url URL [--vision-url URL --image IMAGE] --screenshot OUT.png

--url should serve a model slow enough that an answer takes several network reads (cli_serve.sh uses a random
model of 4 layers x 512); --vision-url a vision model for the image attachment.
"""
import argparse
import os
import sys

from playwright.sync_api import sync_playwright

RESULTS = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    RESULTS["passed" if cond else "failed"] += 1
    print(("ok    " if cond else "FAIL  ") + name + ("" if cond else f" {detail}"))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--image")
    ap.add_argument("--vision-url")
    ap.add_argument("--audio-url", help="an audio model: record from Chromium's fake microphone and send it")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        page = browser.new_page(viewport={"width": 900, "height": 700})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(a.url + "/")
        page.wait_for_function("document.getElementById('model').textContent.length > 0", timeout=10000)
        check("the page loads and shows the model", "·" in page.inner_text("#model"))
        page.fill("#text", "Hello there!")
        page.press("#text", "Enter")
        page.wait_for_selector("#answer-1[data-done='1']", timeout=30000)
        ans = page.inner_text("#answer-1")
        check("typed message -> streamed answer", len(ans) > 0 and not ans.startswith("Error"), repr(ans))
        chunks = page.get_attribute("#answer-1", "data-chunks")
        check("the answer was shown piece by piece as chunks arrived", chunks is not None and int(chunks) > 1,
              str(chunks))
        page.fill("#text", "Tell me more.")
        page.click("#send")
        page.wait_for_selector("#answer-3[data-done='1']", timeout=30000)
        meta = page.inner_text("#answer-3 .meta")
        kept = int(meta.split("(")[1].split()[0]) if "(" in meta else 0
        check("second turn reuses the conversation state", kept > 0, meta)
        check("no JavaScript errors", not errors, str(errors))
        os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
        page.screenshot(path=a.screenshot, full_page=True)
        print(f"screenshot: {os.path.abspath(a.screenshot)}")
        if a.image and a.vision_url:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(a.vision_url + "/")
            page.set_input_files("#file", a.image)
            page.wait_for_function("document.getElementById('att').textContent.length > 0", timeout=10000)
            page.fill("#text", "What is in this picture?")
            page.press("#text", "Enter")
            page.wait_for_selector("#answer-1[data-done='1']", timeout=60000)
            ans = page.inner_text("#answer-1")
            check("attached image -> answer", not ans.startswith("Error"), ans)
            check("the image is shown in the user's message", page.locator(".user img").count() == 1)
            check("no JavaScript errors with an image", not errors, str(errors))
            shot = a.screenshot.replace(".png", "_image.png")
            page.screenshot(path=shot, full_page=True)
            print(f"screenshot: {os.path.abspath(shot)}")
        if a.audio_url:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(a.audio_url + "/")
            page.click("#rec")
            page.wait_for_function("document.getElementById('rec').textContent === 'Stop'", timeout=10000)
            page.wait_for_timeout(1200)
            page.click("#rec")
            page.wait_for_function("document.getElementById('att').textContent.includes('recording')", timeout=20000)
            page.fill("#text", "What did I say?")
            page.press("#text", "Enter")
            page.wait_for_selector("#answer-1[data-done='1']", timeout=60000)
            ans = page.inner_text("#answer-1")
            meta = page.inner_text("#answer-1 .meta") if page.locator("#answer-1 .meta").count() else ""
            prompt = int(meta.split()[0]) if meta else 0
            check("recording (fake microphone -> MediaRecorder -> 16 kHz WAV) -> answer",
                  not ans.startswith("Error") and prompt > len("What did I say?") + 19, f"{ans!r} {meta!r}")
            check("no JavaScript errors with a recording", not errors, str(errors))
        browser.close()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
