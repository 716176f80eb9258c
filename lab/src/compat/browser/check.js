// Runs in a headless browser started by `rill compat` (lab/src/compat/browser.rs): probes
// the browser's WebAssembly SIMD and WebGPU support, loads the engine component (transpiled
// by jco, served at /engine/) with the model streamed in by fetch, generates the reference
// prompt greedily, and posts the facts it saw to /result. Rust decides pass or fail.

const log = (line) => {
  document.getElementById("log").textContent += line + "\n";
  fetch("/log", { method: "POST", body: line });
};

// The smallest modules using a simd128 and a relaxed-SIMD instruction (as the
// wasm-feature-detect library has them): a browser validates them only if it runs them.
const SIMD128 = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11];
const RELAXED_SIMD = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11];

// A WIT error arrives as a ComponentError whose payload is the variant.
const message = (e) => (e && e.payload ? `${e.payload.tag}: ${e.payload.val}` : String(e));

async function webgpuAdapter() {
  if (!navigator.gpu) return { adapter: null, why: "navigator.gpu is missing" };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { adapter: null, why: "requestAdapter() found no adapter" };
    const info = adapter.info || {};
    return { adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unnamed" };
  } catch (e) {
    return { adapter: null, why: String(e) };
  }
}

async function load(inference) {
  const started = performance.now();
  const response = await fetch("/model.gguf");
  const total = Number(response.headers.get("content-length"));
  const loader = new inference.Loader(BigInt(total));
  const reader = response.body.getReader();
  for (let seen = 0, next = 0; ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    loader.push(value);
    seen += value.length;
    if (seen >= next) {
      log(`loading: ${seen >> 20} of ${total >> 20} MiB`);
      next += 64 << 20;
    }
  }
  const model = loader.finish({ ropeScaling: undefined });
  const info = model.info();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  return { model, detail: `${info.name} (${info.architecture}, ${info.quantTypes.join("/")}) loaded in ${seconds} s` };
}

function generate(model, reference) {
  const sampling = { temperature: 0, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, penaltyLastN: 64, seed: 0n, logitBias: [] };
  const params = { sampling, maxTokens: reference.tokens, ignoreEos: true, stop: [], context: 256, onFullContext: { tag: "finish" }, kvType: "f16", logprobs: false, topLogprobs: 0 };
  const generation = model.generate({ tag: "text", val: reference.prompt }, params);
  const out = { text: "", events: 0 };
  for (let ended = false; !ended; ) {
    for (const stepped of model.step({ generations: 1, promptTokens: 256 })) {
      if (stepped.event !== undefined) {
        out.events += 1;
        out.text += stepped.event.text;
      }
      if (stepped.end?.tag === "failed") throw new Error(`generation failed: ${JSON.stringify(stepped.end.val)}`);
      ended ||= stepped.end !== undefined;
    }
  }
  return out;
}

const facts = {
  user_agent: navigator.userAgent,
  simd128: WebAssembly.validate(new Uint8Array(SIMD128)),
  relaxed_simd: WebAssembly.validate(new Uint8Array(RELAXED_SIMD)),
};
try {
  Object.assign(facts, { webgpu: await webgpuAdapter() });
  const reference = await (await fetch("/reference.json")).json();
  const { inference } = await import("/engine/engine.js");
  facts.kernels = inference.getCapabilities().kernelPath;
  const { model, detail } = await load(inference);
  facts.loaded = detail;
  log(detail);
  facts.generated = generate(model, reference);
  log(`generated ${JSON.stringify(facts.generated.text)}`);
} catch (e) {
  facts.error = message(e);
  log(`failed: ${facts.error}`);
}
fetch("/result", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(facts) })
  .catch((e) => log(`posting the result failed: ${e}`));
