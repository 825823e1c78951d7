#!/usr/bin/env python3
"""Writes the small seed corpora in fuzz/seeds/ from tests/fixtures/clip.flv.

Run from the repository root: python3 fuzz/seeds/make_seeds.py
Each seed follows the input layout its target's doc comment describes.
"""
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def tags(path):
    data = open(path, "rb").read()
    at = struct.unpack(">I", data[5:9])[0] + 4
    while at + 11 <= len(data):
        kind = data[at]
        size = int.from_bytes(data[at + 1:at + 4], "big")
        ts = int.from_bytes(data[at + 4:at + 7], "big") | data[at + 7] << 24
        yield kind, ts, data[at + 11:at + 11 + size], data[at:at + 11 + size + 4]
        at += 11 + size + 4


def write(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def chunked(csid, type_id, stream_id, ts, body, chunk_size=4096):
    """One RTMP message: a type 0 chunk header, then type 3 headers."""
    out = bytes([csid]) + min(ts, 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big")
    out += bytes([type_id]) + struct.pack("<I", stream_id)
    if ts >= 0xFFFFFF:
        out += struct.pack(">I", ts)
    for i in range(0, max(len(body), 1), chunk_size):
        if i:
            out += bytes([0xC0 | csid])
        out += body[i:i + chunk_size]
    return out


clip = list(tags(os.path.join(ROOT, "tests", "fixtures", "clip.flv")))
raw = open(os.path.join(ROOT, "tests", "fixtures", "clip.flv"), "rb").read()
script = next(t for t in clip if t[0] == 18)
heads = [t for t in clip if t[0] in (8, 9)][:2]
first_key = next(t for t in clip if t[0] == 9 and t[2][:2] == b"\x17\x01")
some = clip[:12]

# flv_tags: mode, split seed, bytes.
write("flv_tags", "clip-start", bytes([0, 0]) + raw[:13 + sum(len(t[3]) for t in some)])
write("flv_tags", "clip-start-split", bytes([0, 7]) + raw[:13 + sum(len(t[3]) for t in some)])
for i, t in enumerate(heads + [script]):
    write("flv_tags", f"tag-{i}", bytes([1, 0]) + t[3])

# ts_mux: settings, then units (flags, 16-bit step, 16-bit length, payload).
def ts_seed(settings, units):
    out = bytes([settings])
    last = 0
    for kind, ts, body, _ in units:
        flags = {9: 0, 8: 1, 18: 2}[kind]
        if kind == 9 and body[:1] == b"\x17" and body[1:2] == b"\x01":
            flags |= 0x04
        if kind in (8, 9) and body[1:2] == b"\x00":
            flags |= 0x08
        step = max(0, ts - last)
        last = ts
        body = body[:0xFFFF]
        out += bytes([flags]) + struct.pack(">HH", step, len(body)) + body
    return out

units = [t for t in clip if t[0] in (8, 9)]
write("ts_mux", "clip-flags", ts_seed(0x02 | 0x08, units[:40]))
write("ts_mux", "clip-classified", ts_seed(0x02 | 0x08 | 0x20, units[:40]))
audio = [t for t in clip if t[0] == 8][:60]
write("ts_mux", "audio-only", ts_seed(0x02 | 0x20, audio))

# rtmp_session: mode, split seed, bytes. Mode 2 follows a canned publish on stream 1.
media = b"".join(
    chunked({8: 4, 9: 6, 18: 5}[k], k, 1, ts, body) for k, ts, body, _ in clip[:10]
)
meta = b"\x02\x00\x0d@setDataFrame" + script[2]
write("rtmp_session", "publish-media", bytes([2, 0]) + chunked(5, 18, 1, 0, meta) + media)
write("rtmp_session", "publish-media-split", bytes([2, 9]) + media)
aggregate = b"".join(t[3] for t in clip[1:6])
write("rtmp_session", "publish-aggregate", bytes([2, 0]) + chunked(6, 22, 1, 0, aggregate))
handshake = b"\x03" + bytes(1536) + bytes(1536)
write("rtmp_session", "handshake", bytes([0, 0]) + handshake + chunked(3, 1, 0, 0, struct.pack(">I", 4096)))
write("rtmp_session", "set-chunk-size", bytes([1, 0]) + chunked(2, 1, 0, 0, struct.pack(">I", 4096)))

# amf0: mode, bytes.
write("amf0", "onmetadata", bytes([0]) + script[2])
write("amf0", "data-message", bytes([1]) + meta)
props = script[2][13:]  # after the "onMetaData" string
write("amf0", "properties", bytes([2]) + props)
connect = (b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x03"
           b"\x00\x03app\x02\x00\x04live\x00\x00\x09")
write("amf0", "command", bytes([3]) + connect)

# Deep AMF nesting (rml_rtmp's AMF0 reader is recursive; the input guard bounds the depth at
# 32): objects, ECMA arrays and strict arrays opened one inside the other, never closed.
LEVEL = {
    "object": b"\x03\x00\x01a",
    "ecma": b"\x08\x00\x00\x00\x01\x00\x01a",
    "strict": b"\x0a\x00\x00\x00\x01",
}
command_start = b"\x02\x00\x07connect\x00" + struct.pack(">d", 1.0)


def nested(kind, size):
    """Containers of `kind` up to `size` bytes."""
    return LEVEL[kind] * (size // len(LEVEL[kind]))


# At the bound: 32 levels of each kind, closed, around a null (admitted).
closed = b"\x03\x00\x01a" * 16 + b"\x0a\x00\x00\x00\x01" * 16 + b"\x05" + b"\x00\x00\x09" * 16
write("amf0", "nested-at-bound", bytes([1]) + command_start + closed)
# Past the bound, the 36 KB command that overflowed a shard's stack, and its data message and
# raw forms (1,000 levels for the raw reader: deep, but short of an overflow).
write("amf0", "deep-object-command", bytes([3]) + command_start + nested("object", 36_000))
write("amf0", "deep-strict-data", bytes([1]) + nested("strict", 36_000))
write("amf0", "deep-ecma-raw", bytes([0]) + nested("ecma", 8_000))
# rtmp_session: the 36 KB command straight after the handshake (128-byte chunks), and a deep
# onMetaData from a publisher.
write("rtmp_session", "deep-command", bytes([1, 0]) + chunked(3, 20, 0, 0, command_start + nested("object", 36_000), 128))
meta_start = b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData"
write("rtmp_session", "deep-metadata", bytes([2, 0]) + chunked(5, 18, 1, 0, meta_start + nested("ecma", 40_000)))

# http_request: limit, body length, bytes.
for name, head in {
    "get-flv": b"GET /live/cam.flv?token=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    "range": b"GET /live/cam-7-3.ts HTTP/1.1\r\nRange: bytes=10-99\r\n\r\n",
    "suffix-range": b"HEAD /live/cam.m3u8 HTTP/1.0\r\nRange: bytes=-50\r\nAuthorization: Bearer t\r\n\r\n",
    "api": b"GET /api/v1/streams/live/cam HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
}.items():
    write("http_request", name, bytes([128, 3]) + head)

# rtmp_chunks and chunk_reader: a read-splitting byte, then chunks. Publisher-like streams at
# 128 and 4096 bytes a chunk, plain (both readers agree on them) and with the chunk streams
# interleaved at every boundary, with Set Chunk Size between the chunks of a message,
# extended timestamps and an Abort.


def pieces(csid, type_id, ts, body, chunk_size):
    """The chunks of one message, each with its header (type 0, then type 3)."""
    whole = chunked(csid, type_id, 1, ts, body, chunk_size)
    head = 12 + (4 if ts >= 0xFFFFFF else 0)
    cont = 1 + (4 if ts >= 0xFFFFFF else 0)
    out = [whole[:head + min(len(body), chunk_size)]]
    at = len(out[0])
    while at < len(whole):
        out.append(whole[at:at + cont + chunk_size])
        at += len(out[-1])
    return out


def interleave(*messages):
    """Round-robin over the messages' chunks."""
    out = b""
    queues = [list(m) for m in messages]
    while any(queues):
        for q in queues:
            if q:
                out += q.pop(0)
    return out


video = [bytes([0x27, 1, 0, 0, 0]) + bytes(range(256)) * 12 for _ in range(3)]
audio = bytes([0xAF, 1]) + bytes(300)
meta = meta_start + b"\x03\x00\x05width\x00" + struct.pack(">d", 1280.0) + b"\x00\x00\x09"
set_4096 = chunked(2, 1, 0, 0, struct.pack(">I", 4096))
for size in (128, 4096):
    prefix = set_4096 if size == 4096 else b""
    plain = prefix + b"".join(chunked(6, 9, 1, 40 * i, v, size) for i, v in enumerate(video))
    plain += chunked(4, 8, 1, 20, audio, size) + chunked(5, 18, 1, 0, meta, size)
    mixed = prefix + interleave(pieces(6, 9, 40, video[0], size), pieces(4, 8, 23, audio, size),
                                pieces(5, 18, 0, meta, size))
    for target in ("rtmp_chunks", "chunk_reader"):
        write(target, f"plain-{size}", bytes([7]) + plain)
        write(target, f"interleaved-{size}", bytes([3]) + mixed)
# Set Chunk Size between two chunks of a video message; extended timestamps; an Abort.
first, *rest = pieces(6, 9, 0x01000000, video[1], 128)
between = first + set_4096 + b"".join(p[:5] for p in rest[:1]) + video[1][128:]
aborted = first + chunked(2, 2, 0, 0, struct.pack(">I", 6)) + chunked(6, 9, 1, 80, video[2], 128)
for target in ("rtmp_chunks", "chunk_reader"):
    write(target, "chunk-size-mid-message", bytes([1]) + between)
    write(target, "abort", bytes([2]) + aborted)

# upstream_pull: an origin's answers. HTTP-FLV (bit 0 clear): the clip's start as a plain
# and as a chunked response body. RTMP (bit 0 set): the server's commands and media after
# the handshake the target makes.
clip = open(os.path.join(ROOT, "tests", "fixtures", "clip.flv"), "rb").read()[:24000]
write("upstream_pull", "flv-plain",
      bytes([0x40]) + b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n" + clip)
body = b"".join(b"%x\r\n" % len(clip[i:i + 700]) + clip[i:i + 700] + b"\r\n"
                for i in range(0, len(clip), 700))
write("upstream_pull", "flv-chunked",
      bytes([0x20]) + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
write("upstream_pull", "flv-404", bytes([0x02]) + b"HTTP/1.1 404 Not Found\r\n\r\n")


def amf_string(s):
    return b"\x02" + len(s).to_bytes(2, "big") + s


def amf_number(n):
    return b"\x00" + struct.pack(">d", n)


def amf_object(props):
    out = b"\x03"
    for key, value in props:
        out += len(key).to_bytes(2, "big") + key + value
    return out + b"\x00\x00\x09"


connected = amf_string(b"_result") + amf_number(1.0) + amf_object([]) + amf_object(
    [(b"code", amf_string(b"NetConnection.Connect.Success"))])
created = amf_string(b"_result") + amf_number(2.0) + b"\x05" + amf_number(1.0)
started = amf_string(b"onStatus") + amf_number(0.0) + b"\x05" + amf_object(
    [(b"code", amf_string(b"NetStream.Play.Start"))])
rtmp = set_4096 + chunked(3, 20, 0, 0, connected) + chunked(3, 20, 0, 0, created)
rtmp += chunked(5, 20, 1, 0, started) + chunked(5, 18, 1, 0, meta)
rtmp += b"".join(chunked(6, 9, 1, 40 * i, v) for i, v in enumerate(video))
write("upstream_pull", "rtmp-play", bytes([0x41]) + rtmp)
