// The peers' market simulator: the same shape of ticks as tickfeed's (per-symbol seq from 1,
// `ts` in microseconds at publish, price/size/bid/ask), at a total rate held by catching up
// on elapsed time, so every server in a comparison publishes the same load.
'use strict';

function mulberry32(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function nowUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function makeSim({ symbols = 100, rate = 1000, seed = 42 } = {}) {
  const random = mulberry32(seed);
  const names = [];
  for (let i = 0; i < symbols; i++) names.push(`SIM:S${String(i + 1).padStart(4, '0')}`);
  const price = names.map(() => 10 + random() * 490);
  const seq = names.map(() => 0);
  const normal = () => Math.sqrt(-2 * Math.log(random() || 1e-12)) * Math.cos(2 * Math.PI * random());

  // `src_ts`: when the tick was due, the simulated market's own time, as tickfeed's
  // simulator publishes it; `ts` is when it is sent.
  function tick(i, dueUs) {
    price[i] *= Math.exp(0.0005 * normal());
    const p = Math.round(price[i] * 100) / 100;
    seq[i] += 1;
    const size = 1 + Math.floor(random() * 500);
    return `{"type":"tick","symbol":"${names[i]}","seq":${seq[i]},"ts":${nowUs()},"src_ts":${dueUs},"price":${p},"size":${size},"bid":${Math.round((p - 0.01) * 100) / 100},"ask":${Math.round((p + 0.01) * 100) / 100}}`;
  }

  function start(onTick) {
    if (rate <= 0) return;
    const started = performance.now();
    const startedUs = (performance.timeOrigin + started) * 1000;
    let published = 0;
    const late = { skipped: 0, over2ms: 0, over5ms: 0, maxUs: 0 };
    reportOnExit(() => published - late.skipped, late);
    setInterval(() => {
      const elapsed = (performance.now() - started) / 1000;
      const due = Math.floor(elapsed * rate);
      // Never burst more than 100 ms worth after a stall.
      if (due - published > rate / 10) {
        const from = due - Math.ceil(rate / 10);
        late.skipped += from - published;
        published = from;
      }
      countLate(late, published + 1, due, elapsed, rate);
      for (; published < due; published++) {
        const i = Math.floor(random() * names.length);
        onTick(names[i], tick(i, Math.floor(startedUs + ((published + 1) * 1e6) / rate)));
      }
    }, 1);
  }

  return { names, sorted: names.slice().sort(), start };
}

// How late ticks `first..last` (the n-th due n / rate seconds after the start) went out,
// `elapsed` seconds in: the part of a tick's wait its `ts`, stamped here as it is sent,
// cannot show. The same count as tickfeed's simulator keeps, so a comparison can tell
// whether each server's source kept up.
function countLate(late, first, last, elapsed, rate) {
  if (first > last) return;
  const over = (limit) => Math.min(Math.max(Math.ceil((elapsed - limit) * rate) - first, 0), last - first + 1);
  late.over2ms += over(0.002);
  late.over5ms += over(0.005);
  late.maxUs = Math.max(late.maxUs, Math.round((elapsed - first / rate) * 1e6));
}

// On SIGTERM or SIGINT, one line in tickfeed's words, which `run.sh` reads from the log.
function reportOnExit(published, late) {
  const report = () => {
    process.stderr.write(`simulator stopped published=${published()} skipped=${late.skipped} ` +
      `late_over_2ms=${late.over2ms} late_over_5ms=${late.over5ms} late_max_us=${Math.max(late.maxUs, 0)}\n`);
    process.exit(0);
  };
  process.once('SIGTERM', report);
  process.once('SIGINT', report);
}

function argsFromEnv() {
  return {
    port: Number(process.env.PORT || 9001),
    symbols: Number(process.env.SIM_SYMBOLS || 100),
    rate: Number(process.env.SIM_RATE || 1000),
    seed: Number(process.env.SIM_SEED || 42),
  };
}

module.exports = { makeSim, argsFromEnv };
