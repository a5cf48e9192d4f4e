#!/usr/bin/env node
// predict.js runs an ONNX model in ONNX Runtime (CPU) and prints the predicted class (argmax of
// the output) of every example as a JSON array. convert/ort_test.go uses it to check that the
// files ltransfer writes load in a runtime other than ltransfer's own and predict the same.
//
//   node predict.js --model M.onnx --data X.f32 --shape N,C,H,W [--input NAME] [--output NAME]
//                   [--batch B] [--logits OUT.f32]
//
// X.f32 holds N*C*H*W little-endian float32 values, already preprocessed. --input and --output
// name the graph input and output (default: the session's first ones). --logits also writes the
// outputs as little-endian float32, N rows, for comparing values and not only classes.
'use strict';

const fs = require('node:fs');
const { parseArgs } = require('node:util');

function fail(msg) {
  process.stderr.write(`predict.js: ${msg}\n`);
  process.exit(1);
}

// Loaded here rather than at the top so that a missing install gives the command to fix it.
function loadRuntime() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    fail(`cannot load onnxruntime-node (run: npm ci --ignore-scripts --prefix testdata/ort): ${e.message}`);
  }
}

async function main() {
  let args;
  try {
    args = parseArgs({
      options: {
        model: { type: 'string' },
        data: { type: 'string' },
        shape: { type: 'string' },
        input: { type: 'string' },
        output: { type: 'string' },
        batch: { type: 'string', default: '100' },
        logits: { type: 'string' },
      },
    }).values;
  } catch (e) {
    fail(e.message);
  }
  for (const k of ['model', 'data', 'shape']) {
    if (!args[k]) fail(`missing --${k}`);
  }
  const shape = args.shape.split(',').map(Number);
  if (shape.length < 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    fail(`--shape ${args.shape}: want positive integers N,C,H,W`);
  }
  const batch = Number(args.batch);
  if (!Number.isInteger(batch) || batch < 1) fail(`--batch ${args.batch}: want a positive integer`);

  const [n, ...example] = shape;
  const size = example.reduce((a, b) => a * b, 1);
  let bytes;
  try {
    bytes = fs.readFileSync(args.data);
  } catch (e) {
    fail(e.message);
  }
  if (bytes.length !== n * size * 4) {
    fail(`${args.data}: ${bytes.length} bytes, want ${n * size * 4} for float32 ${shape.join('x')}`);
  }
  // Float32Array uses the host's byte order; the files are little-endian.
  if (require('node:os').endianness() !== 'LE') fail('big-endian hosts are not supported');
  // Copy into an aligned buffer: a Buffer's offset need not be a multiple of 4.
  const x = new Float32Array(n * size);
  new Uint8Array(x.buffer).set(bytes);

  const ort = loadRuntime();
  let session;
  try {
    session = await ort.InferenceSession.create(args.model, { executionProviders: ['cpu'] });
  } catch (e) {
    fail(`${args.model}: ${e.message}`);
  }
  const inputName = args.input || session.inputNames[0];
  const outputName = args.output || session.outputNames[0];
  if (!session.inputNames.includes(inputName)) {
    fail(`${args.model}: no input "${inputName}" (inputs: ${session.inputNames.join(', ')})`);
  }
  if (!session.outputNames.includes(outputName)) {
    fail(`${args.model}: no output "${outputName}" (outputs: ${session.outputNames.join(', ')})`);
  }

  const preds = [];
  const rows = [];
  for (let start = 0; start < n; start += batch) {
    const m = Math.min(batch, n - start);
    const feed = {
      [inputName]: new ort.Tensor('float32', x.subarray(start * size, (start + m) * size), [m, ...example]),
    };
    let out;
    try {
      out = (await session.run(feed, [outputName]))[outputName];
    } catch (e) {
      fail(`${args.model}: examples ${start}..${start + m - 1}: ${e.message}`);
    }
    const classes = out.data.length / m;
    if (!Number.isInteger(classes) || classes < 1) {
      fail(`${args.model}: output "${outputName}" has shape [${out.dims}] for ${m} examples`);
    }
    for (let i = 0; i < m; i++) {
      // First index of the maximum, the tie rule of ltransfer's evaluation.
      let best = 0;
      for (let j = 1; j < classes; j++) {
        if (out.data[i * classes + j] > out.data[i * classes + best]) best = j;
      }
      preds.push(best);
    }
    rows.push(Float32Array.from(out.data));
  }
  if (args.logits) {
    try {
      fs.writeFileSync(args.logits, Buffer.concat(rows.map((r) => Buffer.from(r.buffer))));
    } catch (e) {
      fail(e.message);
    }
  }
  process.stdout.write(JSON.stringify(preds) + '\n');
}

main().catch((e) => fail(e.stack || String(e)));
