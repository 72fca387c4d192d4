// ort_embed.js - bench_ort.py's ONNX Runtime side: embeds N images (raw float32, NCHW, 1 x 28 x 28)
// in batches with onnxruntime-node (found through NODE_PATH), after one warm-up batch, and prints
// {"images_per_sec": ...} as JSON.
//   node ort_embed.js MODEL.onnx IMAGES.f32 N BATCH THREADS
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, nArg, bArg, tArg] = process.argv.slice(2);
  const n = Number(nArg), batch = Number(bArg), threads = Number(tArg);
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const per = 28 * 28;
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' });
  const name = session.inputNames[0];
  const run = async (i0, m) => {
    const t = new ort.Tensor('float32', x.subarray(i0 * per, (i0 + m) * per), [m, 1, 28, 28]);
    return session.run({ [name]: t });
  };
  await run(0, Math.min(batch, n)); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += batch) await run(i, Math.min(batch, n - i));
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ images_per_sec: n / s, seconds: s }));
}
main().catch((e) => { console.error('ort_embed: ' + e); process.exit(1); });
