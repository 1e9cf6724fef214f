/** Plain progress lines off a terminal: timestamp, rate and ETA from a clock, one line per interval. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ProgressMeter, formatDuration, formatRate } from "../../src/util/progress.js";

test("durations and rates read as a person would write them", () => {
  assert.equal(formatDuration(3.24), "3.2 s");
  assert.equal(formatDuration(42.4), "42 s");
  assert.equal(formatDuration(245), "4m 05s");
  assert.equal(formatDuration(2 * 3600 + 7 * 60 + 10), "2h 07m");
  assert.equal(formatDuration(Infinity), "?");
  assert.equal(formatRate(12.345), "12.3/s");
  assert.equal(formatRate(250), "250/s");
  assert.equal(formatRate(0.25), "4.00 s each");
  assert.equal(formatRate(0), "?/s");
});

test("a line at the first measurable step, then one per interval, and the last; ETA from this run's rate", () => {
  let now = Date.UTC(2026, 10, 29, 10, 0, 0);
  const m = new ProgressMeter("identify", { intervalSeconds: 10, now: () => now });
  // resumed at 100 of 848: the clock starts here, nothing to print yet
  assert.equal(m.update(100, 848), null);
  now += 4000;
  const first = m.update(104, 848, "212 tokens/s");
  // 4 samples in 4 s: 1/s; 744 left → 744 s
  assert.equal(
    first,
    "2026-11-29T10:00:04Z identify 104/848 (12.3%) 1.00/s, elapsed 4.0 s, ETA 12m 24s | 212 tokens/s",
  );
  now += 4000;
  assert.equal(m.update(108, 848), null, "within the interval: silent");
  now += 6000;
  const second = m.update(114, 848)!;
  // 14 in 14 s: still 1/s, 734 left
  assert.match(
    second,
    /^2026-11-29T10:00:14Z identify 114\/848 \(13\.4%\) 1\.00\/s, elapsed 14 s, ETA 12m 14s$/,
  );
  now += 1000;
  assert.match(m.update(848, 848)!, /identify 848\/848 \(100\.0%\) .* elapsed 15 s, done$/);
});

test("a stage finished at its first report still prints its line", () => {
  const m = new ProgressMeter("cluster", { now: () => 0 });
  assert.match(
    m.update(3, 3)!,
    /^1970-01-01T00:00:00Z cluster 3\/3 \(100\.0%\) \?\/s, elapsed 0\.0 s, done$/,
  );
});

test("the same stage run again (an experiment's next cell) starts its own clock", () => {
  let now = 0;
  const m = new ProgressMeter("train", { intervalSeconds: 10, now: () => now });
  m.update(0, 32);
  now += 2000;
  m.update(2, 32);
  now += 60_000;
  assert.match(m.update(32, 32)!, /train 32\/32 .* elapsed 1m 02s, done$/);
  // three minutes later the next cell trains: same stage name, same total, counting from 0 again
  now += 180_000;
  assert.equal(m.update(0, 32), null, "the first report of the new run only starts its clock");
  now += 2000;
  assert.match(m.update(1, 32)!, /train 1\/32 \(3\.1%\) 2\.00 s each, elapsed 2\.0 s, ETA 1m 02s$/);
  // a smaller total or a count going back also starts a new run
  now += 1000;
  assert.equal(m.update(0, 16), null);
  now += 4000;
  assert.match(m.update(2, 16)!, /elapsed 4\.0 s/);
});
