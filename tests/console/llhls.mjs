// Low-Latency HLS in a real browser, for tests/llhls.rs: Debian's chromium, headless,
// driven through the DevTools protocol by puppeteer-core, playing with hls.js in
// lowLatencyMode.
//
//   node llhls.mjs PLAYLIST_URL SECONDS
//
// Opens an empty page, loads hls.js (from node_modules, the version package-lock.json pins)
// into it, plays PLAYLIST_URL in a muted <video> and samples once a second for SECONDS: the
// playback position, the distance to live from the playlist's EXT-X-PROGRAM-DATE-TIME (wall
// clock now minus the date of the frame being shown: hls.js's `playingDate`) and hls.js's
// own estimate (`latency`). Records every hls.js error event and every page error. Prints
// one JSON line with what it saw; the Rust test asserts on it. Exits 1 (still printing the
// JSON, with "error") when a step fails.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { launchChromium } from "./browser.mjs";

const [url, secondsArg] = process.argv.slice(2);
if (!secondsArg) {
  process.stderr.write("usage: node llhls.mjs PLAYLIST_URL SECONDS\n");
  process.exit(2);
}
const seconds = Number(secondsArg);
/** Bound for playback to start, ms. */
const START_MS = 15000;

const require = createRequire(import.meta.url);
const hlsSource = readFileSync(require.resolve("hls.js/dist/hls.min.js"), "utf8");
const results = { page_errors: [], samples: [] };

const browser = await launchChromium();
let exitCode = 0;
try {
  results.browser = await browser.version();
  const page = await browser.newPage();
  page.on("pageerror", (err) => results.page_errors.push(String(err)));
  await page.setContent("<!doctype html><video id=v muted playsinline></video>");
  await page.addScriptTag({ content: hlsSource });
  results.hls_js = await page.evaluate(() => window.Hls.version);
  results.supported = await page.evaluate(() => window.Hls.isSupported());
  await page.evaluate((source) => {
    window.hlsErrors = [];
    const video = document.getElementById("v");
    const hls = new window.Hls({ lowLatencyMode: true });
    window.hls = hls;
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      window.hlsErrors.push({
        type: data.type,
        details: data.details,
        fatal: data.fatal,
        at: video.currentTime,
        fragment: data.frag ? data.frag.sn : null,
        part: data.part ? data.part.index : null,
        duration: data.part ? data.part.duration : data.frag ? data.frag.duration : null,
        error: data.error ? String(data.error) : null,
      });
    });
    hls.loadSource(source);
    hls.attachMedia(video);
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => video.play());
  }, url);
  await page.waitForFunction(() => document.getElementById("v").currentTime > 0, {
    timeout: START_MS,
    polling: 50,
  });
  const started = await page.evaluate(() => document.getElementById("v").currentTime);
  for (let i = 0; i < seconds; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    results.samples.push(
      await page.evaluate(() => {
        const video = document.getElementById("v");
        const date = window.hls.playingDate;
        return {
          position: video.currentTime,
          behind_live_s: date ? (Date.now() - date.getTime()) / 1000 : null,
          hls_latency_s: window.hls.latency,
          low_latency: window.hls.lowLatencyMode,
          stalled: video.readyState < 3,
        };
      }),
    );
  }
  const ended = await page.evaluate(() => document.getElementById("v").currentTime);
  results.played_s = ended - started;
  results.hls_errors = await page.evaluate(() => window.hlsErrors);
} catch (err) {
  results.error = String(err);
  exitCode = 1;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + "\n");
process.exit(exitCode);
