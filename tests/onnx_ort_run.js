// onnx_ort_run.js - test-only helper of tests/test_onnx_ort.py: runs an ONNX file in ONNX Runtime
// for Node (onnxruntime-node, found through NODE_PATH) on raw float32 inputs and writes the first
// output as raw float32, then prints its dims as JSON.
//   node onnx_ort_run.js MODEL.onnx INPUT.f32 N C H W OUTPUT.f32
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, n, c, h, w, output] = process.argv.slice(2);
  const dims = [n, c, h, w].map(Number);
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', Float32Array.from(x), dims);
  const result = await session.run(feeds);
  const y = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.length * 4));
  console.log(JSON.stringify({ input: session.inputNames[0], output: session.outputNames[0], dims: y.dims }));
}
main().catch((e) => { console.error('onnx_ort_run: ' + e); process.exit(1); });
