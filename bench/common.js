// Shared pieces of the benchmark cases: statistics, the child-process runner
// (each memory backend is fixed when the addon loads, so every backend is
// measured in a process of its own), batched timing and Markdown tables.
'use strict';
const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setImmediate: yieldToLoop } = require('node:timers/promises');

const REPO = path.join(__dirname, '..');
const BACKENDS = ['tcmalloc', 'system'];
const SIZES = [64, 1024, 16 * 1024, 64 * 1024];

// ---- statistics ----

function sorted(values) {
  return [...values].sort((a, b) => a - b);
}

/** Linear-interpolated quantile, q in [0, 1]. */
function quantile(values, q) {
  const s = sorted(values);
  if (s.length === 0) return NaN;
  const position = (s.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return s[low] + (s[high] - s[low]) * (position - low);
}

/** Median, quartiles and extremes of a sample. */
function summarize(values) {
  return {
    median: quantile(values, 0.5),
    q1: quantile(values, 0.25),
    q3: quantile(values, 0.75),
    min: Math.min(...values),
    max: Math.max(...values),
    n: values.length,
  };
}

/**
 * Summary of the per-round ratios a[i] / b[i] of two interleaved samples.
 * Both variants of a round ran seconds apart, so a burst of load from
 * elsewhere on a shared machine mostly slows both, and the round's ratio
 * survives it where a ratio of the two overall medians would not.
 */
function pairedRatios(a, b) {
  return summarize(a.map((value, round) => value / b[round]));
}

// ---- timing ----

/**
 * Runs `operation` `count` times in batches, yielding to the event loop
 * between batches, and returns the CPU time of the whole process (user and
 * system, all threads, so the garbage collector's helpers count too) in ns
 * per operation. CPU time rather than wall time, because on a shared
 * machine the time this process waits for a core is not the code's cost. The yields are inside the timed span on purpose. Node-API
 * finalizers and other deferred work run from the event loop, so a variant
 * that leaves work for later pays for it here, not after the clock stops.
 */
async function timeBatched(operation, count, batch = 1000) {
  const start = process.cpuUsage();
  for (let done = 0; done < count; done += batch) {
    const end = Math.min(count, done + batch);
    for (let i = done; i < end; i++) operation();
    await yieldToLoop();
  }
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / count;
}

/**
 * Measures several variants in interleaved rounds: every round runs each
 * variant once, in an order rotated by the round number, so slow drifts of
 * the machine spread over all of them. Returns ns-per-operation samples per
 * variant name.
 */
async function interleave(variants, { rounds, count, warmup = 1 }) {
  const names = Object.keys(variants);
  for (let w = 0; w < warmup; w++) {
    for (const name of names) await timeBatched(variants[name], Math.min(count, 5000));
  }
  const samples = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length];
      samples[name].push(await timeBatched(variants[name], count));
    }
  }
  return samples;
}

// ---- child processes ----

/**
 * Runs `script` in a child process with the given memory backend and returns
 * the value the child passed to childMain's reporter. Rejects when the child
 * exits non-zero or reports nothing, or after `timeoutMs`.
 */
function runChild(script, { backend, args = [], execArgv = [], timeoutMs = 600_000 } = {}) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    if (backend !== undefined) env.MQTT_ALLOCATOR_BACKEND = backend;
    const child = fork(script, args, { env, execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(script)} (${backend}) timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', (message) => {
      if (message && message.type === 'result') result = message.value;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        const error = new Error(`${path.basename(script)} (${backend}) exited with ${code ?? signal}`);
        error.result = result;
        error.exitCode = code;
        reject(error);
      } else if (result === undefined) {
        reject(new Error(`${path.basename(script)} (${backend}) reported no result`));
      } else {
        resolve(result);
      }
    });
  });
}

/** Runs `script` once per memory backend, each in a process of its own, and
 * returns the results by backend name. */
async function runPerBackend(script, { quick }) {
  const byBackend = {};
  for (const backend of BACKENDS) {
    byBackend[backend] = await runChild(script, { backend, args: quick ? ['--quick'] : [] });
  }
  return byBackend;
}

/**
 * Runs the child side of runChild: calls `measure(options)` and sends its
 * value to the parent, or prints it as JSON when there is no parent.
 * `options.quick` is true for --quick. The exit code is the one the
 * measurement sets (process.exitCode), or 1 when it throws.
 */
function childMain(measure) {
  const options = { quick: process.argv.includes('--quick'), args: process.argv.slice(2) };
  Promise.resolve()
    .then(() => measure(options))
    .then((value) => {
      if (process.send) {
        process.send({ type: 'result', value }, () => process.disconnect());
      } else {
        console.log(JSON.stringify(value, null, 2));
      }
    })
    .catch((error) => {
      console.error(error);
      process.exitCode = 1;
      if (process.send) process.disconnect();
    });
}

/** Loads the built package from dist/, which is what the benchmark measures. */
function loadPackage() {
  try {
    return require(path.join(REPO, 'dist', 'index.js'));
  } catch (error) {
    throw new Error(`cannot load dist/ (run npm run build first): ${error.message}`);
  }
}

/** Returns the addon's benchmark-only floor, or undefined when this build lacks it. */
function externalBufferFloor() {
  const { native } = require(path.join(REPO, 'dist', 'native.js'));
  return typeof native.externalBufferFloor === 'function' ? native.externalBufferFloor : undefined;
}

// ---- machine and output ----

function machineInfo() {
  let cpu = 'unknown';
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) cpu = line.split(':')[1].trim();
  } catch {
    cpu = os.cpus()[0]?.model ?? 'unknown';
  }
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpu,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

function formatSize(bytes) {
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** Formats a number with `digits` decimals, or an en dash when absent. */
function fmt(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Formats a Markdown table. `align` has 'l' or 'r' per column. */
function table(headers, rows, align = headers.map(() => 'r')) {
  const rule = align.map((a) => (a === 'l' ? '---' : '---:'));
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(rule), ...rows.map(line)].join('\n');
}

module.exports = {
  REPO,
  BACKENDS,
  SIZES,
  quantile,
  summarize,
  pairedRatios,
  timeBatched,
  interleave,
  runChild,
  runPerBackend,
  childMain,
  loadPackage,
  externalBufferFloor,
  machineInfo,
  formatSize,
  fmt,
  table,
  yieldToLoop,
};
