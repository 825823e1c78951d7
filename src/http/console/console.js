// corecast console: reads the JSON API once a second and shows it; plays a stream with the
// vendored mpegts.js (HTTP-FLV through Media Source Extensions), or HLS where the browser
// plays it itself. No framework: the tables are built with the DOM, text set with
// textContent only.
"use strict";

(function () {
  /** How often the API is read (it is refreshed once a second). */
  const POLL_MS = 1000;

  /** Latency stages in data-path order, with what each measures. */
  const STAGES = [
    ["ingest_to_ring", "Publisher bytes read to unit in the owner's ring"],
    ["mesh_hop", "Ingest to unit in another shard's replica ring"],
    ["relay_latency_flv", "Ingest to the unit's last byte accepted by the kernel for an HTTP-FLV viewer"],
    ["relay_latency_rtmp", "Ingest to the unit's last byte accepted by the kernel for an RTMP player"],
    ["viewer_lag", "Age of a viewer's oldest unsent unit, sampled at each send"],
    ["hls_publish", "Keyframe closing an HLS segment to the playlist handed to every shard"],
    ["http_service", "HLS request parsed to response handed to the kernel"],
  ];

  const DASH = "—";
  const $ = (id) => document.getElementById(id);
  const video = $("video");

  /** The latest /api/v1/stats, or null. */
  let stats = null;
  /** The latest streams by name ("app/stream"). */
  let streams = new Map();
  /** Per shard: bytes sent and when, at the previous poll (for the outgoing rate). */
  let previousOut = new Map();
  /** The stream in the player ("app/stream"), or null. */
  let selected = null;
  /** The mpegts.js player while HTTP-FLV plays. */
  let player = null;
  /** The URL being played. */
  let playing = null;
  /** The player's last error, shown until the next play. */
  let playerError = null;

  class Unauthorized extends Error {}

  // ---- formatting ----

  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const text = (v) => (v === undefined || v === null || v === "" ? DASH : String(v));
  const fixed = (v, digits) => (isNumber(v) ? v.toFixed(digits) : DASH);

  function milliseconds(v) {
    if (!isNumber(v)) return DASH;
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return v.toFixed(0);
  }

  function bits(kbps) {
    if (!isNumber(kbps)) return DASH;
    if (kbps >= 1000) return (kbps / 1000).toFixed(1) + " Mbit/s";
    return kbps.toFixed(0) + " kbit/s";
  }

  function bytes(n) {
    if (!isNumber(n)) return DASH;
    const units = ["B", "KiB", "MiB", "GiB"];
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit += 1;
    }
    return (unit === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[unit];
  }

  /** The port of a "host:port" or "[v6]:port" address, or null. */
  function portOf(address) {
    if (typeof address !== "string") return null;
    const port = address.slice(address.lastIndexOf(":") + 1);
    return /^[0-9]+$/.test(port) && port !== "0" ? port : null;
  }

  /** "http://<the host this page was opened with>:<the media port>", or null if unknown. */
  function mediaOrigin() {
    const port = portOf(stats && stats.listeners && stats.listeners.http);
    return port ? "http://" + location.hostname + ":" + port : null;
  }

  /** The media path of a stream, without the suffix. */
  function mediaPath(s) {
    return "/" + encodeURIComponent(s.app) + "/" + encodeURIComponent(s.stream);
  }

  // ---- the DOM ----

  function td(row, className) {
    const cell = document.createElement("td");
    if (className) cell.className = className;
    row.appendChild(cell);
    return cell;
  }

  function setStatus(kind, message) {
    const status = $("status");
    status.className = "status " + kind;
    status.textContent = message;
  }

  function renderTotals(s, list) {
    const set = (key, value) => {
      document.querySelector('[data-total="' + key + '"]').textContent = value;
    };
    const viewers = s.viewers || {};
    const listeners = s.listeners || {};
    set("shards", text(s.shards));
    set("streams", text(s.streams));
    set("publishers", text(s.publishers));
    set("flv", text(viewers.flv));
    set("rtmp", text(viewers.rtmp));
    set("in", bits(list.reduce((sum, x) => sum + (x.bitrate_in_kbps || 0), 0)));
    set("out", bits(list.reduce((sum, x) => sum + (x.bitrate_out_kbps || 0), 0)));
    set("http", text(listeners.http));
    set("rtmp-listen", text(listeners.rtmp));
  }

  function renderShards(s) {
    const body = document.querySelector("#shards tbody");
    const now = performance.now();
    const rows = (s.per_shard || []).map((shard) => {
      const row = document.createElement("tr");
      td(row, "num").textContent = text(shard.shard);

      const busy = td(row);
      const bar = document.createElement("span");
      const fill = document.createElement("span");
      const share = isNumber(shard.busy) ? Math.min(Math.max(shard.busy, 0), 1) : 0;
      bar.className = share >= 0.8 ? "bar high" : "bar";
      fill.style.width = (share * 100).toFixed(1) + "%";
      bar.appendChild(fill);
      busy.appendChild(bar);
      busy.appendChild(document.createTextNode(isNumber(shard.busy) ? (shard.busy * 100).toFixed(0) + " %" : DASH));

      td(row, "num").textContent = text(shard.streams);
      td(row, "num").textContent = text(shard.publishers);
      td(row, "num").textContent = text(shard.flv_viewers);
      td(row, "num").textContent = text(shard.rtmp_players);

      // Bytes out is a counter: the rate is its change since the previous poll.
      const before = previousOut.get(shard.shard);
      let rate = null;
      if (before && isNumber(shard.bytes_out) && now > before.at) {
        rate = ((shard.bytes_out - before.bytes) * 8) / (now - before.at);
      }
      previousOut.set(shard.shard, { bytes: shard.bytes_out, at: now });
      td(row, "num").textContent = bits(rate);

      // Every part the shard accounts for (rings, GOP caches, HLS, connection buffers,
      // mesh queues, histograms); the tooltip lists them.
      const memory = shard.memory_bytes || {};
      const cell = td(row, "num");
      const parts = Object.entries(memory).filter(([, value]) => isNumber(value));
      cell.textContent = parts.length ? bytes(parts.reduce((sum, [, value]) => sum + value, 0)) : DASH;
      cell.title = parts.map(([name, value]) => name.replace(/_/g, " ") + " " + bytes(value)).join(", ");
      return row;
    });
    body.replaceChildren(...rows);
  }

  function renderLatency(s) {
    $("latency-window").textContent = text(s.latency_window_s);
    const latency = s.latency || {};
    const body = document.querySelector("#latency tbody");
    const rows = STAGES.map(([tag, help]) => {
      const figures = latency[tag] || {};
      const row = document.createElement("tr");
      const name = td(row, "mono");
      name.textContent = tag;
      name.title = help;
      td(row, "num").textContent = text(figures.count);
      for (const key of ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]) {
        // No sample in the window: the quantiles mean nothing.
        td(row, "num").textContent = figures.count ? milliseconds(figures[key]) : DASH;
      }
      return row;
    });
    body.replaceChildren(...rows);
  }

  /** Builds the row of a stream once; its cells are updated in place at each poll. */
  function streamRow(name) {
    const row = document.createElement("tr");
    row.dataset.stream = name;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "play";
    button.textContent = name;
    button.title = "Play " + name;
    td(row, "name").appendChild(button);
    for (const className of ["video", "audio", "num size", "num fps", "num gop", "num in", "num out",
      "num viewers-flv", "num viewers-rtmp", "num viewers-total", "per-shard", "urls"]) {
      td(row, className);
    }
    return row;
  }

  function link(parent, className, label, href) {
    const a = document.createElement("a");
    a.className = className;
    a.textContent = label;
    a.href = href;
    a.title = href;
    parent.appendChild(a);
  }

  function renderStreams(list) {
    const body = document.querySelector("#streams tbody");
    const rows = new Map();
    for (const row of body.querySelectorAll("tr[data-stream]")) rows.set(row.dataset.stream, row);
    streams = new Map(list.map((s) => [s.name, s]));
    const origin = mediaOrigin();
    const rtmpPort = portOf(stats && stats.listeners && stats.listeners.rtmp);
    const names = [...streams.keys()].sort();
    names.forEach((name, index) => {
      const s = streams.get(name);
      let row = rows.get(name);
      if (!row) row = streamRow(name);
      rows.delete(name);
      const cell = (className) => row.querySelector("td." + className.split(" ").join("."));
      const viewers = s.viewers || {};
      row.querySelector("td.name").title = s.publisher
        ? "publisher " + s.publisher + (isNumber(s.publishing_seconds) ? ", for " + s.publishing_seconds.toFixed(0) + " s" : "")
        : "waiting for its publisher to come back";
      cell("video").textContent = text(s.video_codec);
      cell("audio").textContent = text(s.audio_codec);
      cell("size").textContent = isNumber(s.width) && isNumber(s.height) ? s.width + "×" + s.height : DASH;
      cell("fps").textContent = isNumber(s.frame_rate) ? String(Math.round(s.frame_rate * 100) / 100) : DASH;
      cell("gop").textContent = isNumber(s.gop_ms) ? (s.gop_ms / 1000).toFixed(1) : DASH;
      cell("in").textContent = fixed(s.bitrate_in_kbps, 0);
      cell("out").textContent = fixed(s.bitrate_out_kbps, 0);
      cell("viewers-flv").textContent = text(viewers.flv);
      cell("viewers-rtmp").textContent = text(viewers.rtmp);
      cell("viewers-total").textContent = text(viewers.total);
      const perShard = (s.viewers_per_shard || []).map((v) => "#" + v.shard + " " + ((v.flv || 0) + (v.rtmp || 0)));
      cell("per-shard").textContent = perShard.length ? perShard.join(" · ") : DASH;
      cell("per-shard").title = (s.viewers_per_shard || [])
        .map((v) => "shard " + v.shard + ": " + v.flv + " HTTP-FLV, " + v.rtmp + " RTMP")
        .join("\n");
      const urls = cell("urls");
      const path = mediaPath(s);
      const key = origin + " " + rtmpPort;
      if (!urls.firstChild || urls.dataset.key !== key) {
        urls.replaceChildren();
        urls.dataset.key = key;
        if (origin) {
          link(urls, "flv-url", "FLV", origin + path + ".flv");
          link(urls, "hls-url", "HLS", origin + path + ".m3u8");
        }
        if (rtmpPort) link(urls, "rtmp-url", "RTMP", "rtmp://" + location.hostname + ":" + rtmpPort + path);
        if (!urls.firstChild) urls.textContent = DASH;
      }
      row.classList.toggle("selected", name === selected);
      // In name order; moved only when out of place, so a click is never lost.
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    });
    for (const gone of rows.values()) gone.remove();
    $("no-streams").hidden = names.length > 0;
  }

  // ---- the player ----

  function stop() {
    if (player) {
      player.pause();
      player.unload();
      player.detachMediaElement();
      player.destroy();
      player = null;
    }
    video.removeAttribute("src");
    video.load();
    playing = null;
  }

  function fail(message) {
    playerError = message;
    renderPlayer();
  }

  function play(name) {
    stop();
    selected = name;
    playerError = null;
    $("player-stream").textContent = name;
    for (const row of document.querySelectorAll("#streams tr[data-stream]")) {
      row.classList.toggle("selected", row.dataset.stream === name);
    }
    const s = streams.get(name);
    const origin = mediaOrigin();
    if (!s) return fail("the stream is no longer live");
    if (!origin) return fail("the server does not report its HTTP listener: no URL to play");
    const kind = $("player-kind").value;
    const token = $("player-token").value.trim();
    const query = token ? "?token=" + encodeURIComponent(token) : "";
    const url = origin + mediaPath(s) + (kind === "hls" ? ".m3u8" : ".flv") + query;
    if (kind === "hls") {
      if (!video.canPlayType("application/vnd.apple.mpegurl")) {
        return fail("this browser does not play HLS itself: choose HTTP-FLV, or open the HLS URL in a player");
      }
      video.src = url;
    } else {
      if (!window.mpegts || !mpegts.getFeatureList().mseLivePlayback) {
        return fail("this browser cannot play HTTP-FLV (no Media Source Extensions): open the FLV URL in a player");
      }
      player = mpegts.createPlayer(
        { type: "flv", isLive: true, url: url },
        {
          enableWorker: false,
          enableStashBuffer: false,
          liveBufferLatencyChasing: true,
          liveBufferLatencyMaxLatency: 3,
          liveBufferLatencyMinRemain: 0.5,
        },
      );
      player.on(mpegts.Events.ERROR, (type, detail, info) => {
        fail(type + ": " + detail + (info && info.msg ? " (" + info.msg + ")" : ""));
      });
      player.attachMediaElement(video);
      player.load();
    }
    playing = url;
    const started = video.play();
    if (started) started.catch((err) => fail("playback refused: " + err.message));
    renderPlayer();
  }

  function renderPlayer() {
    const status = $("player-status");
    if (playerError) {
      status.className = "player-status mono error";
      status.textContent = playerError;
      return;
    }
    status.className = "player-status mono";
    if (!playing) {
      status.textContent = DASH;
      return;
    }
    const parts = [playing.replace(/token=[^&]*/, "token=…")];
    if (video.videoWidth) parts.push(video.videoWidth + "×" + video.videoHeight);
    parts.push(video.currentTime.toFixed(1) + " s played");
    const buffered = video.buffered;
    if (buffered.length) parts.push((buffered.end(buffered.length - 1) - video.currentTime).toFixed(1) + " s buffered");
    if (video.paused) parts.push("paused");
    status.textContent = parts.join(" · ");
  }

  video.addEventListener("error", () => {
    if (playing && video.error) fail("media error " + video.error.code + ": " + (video.error.message || "cannot decode"));
  });
  video.addEventListener("timeupdate", renderPlayer);

  document.querySelector("#streams tbody").addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    const row = event.target.closest("tr[data-stream]");
    if (row) play(row.dataset.stream);
  });
  $("player-stop").addEventListener("click", () => {
    stop();
    selected = null;
    playerError = null;
    $("player-stream").textContent = DASH;
    for (const row of document.querySelectorAll("#streams tr.selected")) row.classList.remove("selected");
    renderPlayer();
  });
  for (const id of ["player-kind", "player-token"]) {
    $(id).addEventListener("change", () => {
      if (selected) play(selected);
    });
  }
  $("player-form").addEventListener("submit", (event) => event.preventDefault());

  if (window.mpegts) {
    // Warnings and errors only: its debug output would fill the console.
    mpegts.LoggingControl.enableVerbose = false;
    mpegts.LoggingControl.enableDebug = false;
    mpegts.LoggingControl.enableInfo = false;
  }

  // ---- polling ----

  async function json(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  async function poll() {
    try {
      const [s, list] = await Promise.all([json("/api/v1/stats"), json("/api/v1/streams")]);
      stats = s;
      const live = list.streams || [];
      renderTotals(s, live);
      renderStreams(live);
      renderShards(s);
      renderLatency(s);
      setStatus("ok", "updated " + new Date().toLocaleTimeString());
    } catch (err) {
      if (err instanceof Unauthorized) {
        setStatus("error", "not signed in: reload the page and give the admin token as the password");
      } else {
        setStatus("error", "no answer from the server (" + err.message + ")");
      }
    }
    renderPlayer();
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
