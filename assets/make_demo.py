#!/usr/bin/env python3
"""Writes assets/demo.mid: a 16-second piece made for Piano-SSM's README (ours, MIT/Apache).

Four bars of a I–vi–IV–V progression in C: left-hand broken chords, right-hand melody,
sustain pedal changed on every bar, dynamics swelling and falling. Standard library only.
"""
import struct
import sys

TPQ = 480          # ticks per quarter note
TEMPO = 600_000    # µs per quarter: 100 bpm

def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.insert(0, (n & 0x7F) | 0x80)
        n >>= 7
    return bytes(out)

events = []  # (tick, order, bytes)

def note(start, length, key, vel):
    events.append((start, 1, bytes([0x90, key, vel])))
    events.append((start + length, 0, bytes([0x80, key, 64])))

def pedal(tick, down):
    events.append((tick, 2 if down else 0, bytes([0xB0, 64, 127 if down else 0])))

bar = 4 * TPQ
chords = [(48, [48, 55, 60, 64]), (45, [45, 52, 57, 60]), (41, [41, 48, 53, 57]), (43, [43, 50, 55, 59])]
melody = [
    [(0, 2, 76), (2, 1, 74), (3, 1, 72)],
    [(0, 1.5, 72), (1.5, 0.5, 74), (2, 2, 76)],
    [(0, 1, 77), (1, 1, 76), (2, 1, 74), (3, 1, 72)],
    [(0, 3, 71), (3, 1, 74)],
]
swell = [70, 85, 95, 75]
for b, ((bass, arp), line, loud) in enumerate(zip(chords * 2, melody * 2, swell * 2)):
    t0 = b * bar
    pedal(t0 + 20, True)
    pedal(t0 + bar - 10, False)
    note(t0, bar - 40, bass - 12, loud - 15)
    for i in range(8):  # broken chord in eighths
        note(t0 + i * TPQ // 2, TPQ // 2, arp[i % 4], loud - 25 + (i % 4) * 3)
    for beat, length, key in line:
        k = key + (12 if b >= 4 else 0)
        note(t0 + int(beat * TPQ), int(length * TPQ) - 20, k, min(127, loud + 10))
# final chord
end = 8 * bar
pedal(end, True)
for k, v in [(36, 60), (48, 55), (55, 55), (60, 60), (64, 62), (72, 70), (76, 72), (84, 65)]:
    note(end, 3 * bar // 2, k, v)
pedal(end + 2 * bar, False)

events.sort()
track = b"\x00\xFF\x51\x03" + TEMPO.to_bytes(3, "big")
last = 0
for tick, _, data in events:
    track += vlq(tick - last) + data
    last = tick
track += b"\x00\xFF\x2F\x00"
smf = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ) + b"MTrk" + struct.pack(">I", len(track)) + track
out = sys.argv[1] if len(sys.argv) > 1 else "assets/demo.mid"
open(out, "wb").write(smf)
print(f"wrote {out}: {len(events)} events, {last / TPQ * TEMPO / 1e6:.1f} s")
