// Debian's chromium, headless, for the browser tests (console.mjs, llhls.mjs): video plays
// without a user gesture, muted; the sandbox is left out when running as root, which it
// refuses.

import puppeteer from "puppeteer-core";

export function launchChromium() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--autoplay-policy=no-user-gesture-required",
      "--mute-audio",
      "--disable-dev-shm-usage",
      // Chromium's sandbox refuses to run as root.
      ...(process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : []),
    ],
  });
}
