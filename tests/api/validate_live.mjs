// validate_live.mjs - checks that api/openapi.yaml tells the truth about a
// running multiboxd.  It loads the spec (yaml), compiles its schemas with
// ajv's JSON Schema 2020-12 validator, validates every golden request against
// the request schema, then starts the real server on an ephemeral loopback
// port, sends valid and invalid requests and validates each live answer
// (status, Content-Type, body) against the spec's response for that path,
// method and status.  It always stops the server it started; it never talks
// to anything but 127.0.0.1.
//
// Usage: node validate_live.mjs MULTIBOXD GOLDEN_DIR [SPEC]
// Prints one "ok"/"not ok" line per check and "N passed, N failed" last;
// exits 0 when every check passed, 1 otherwise.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const YAML = require('yaml');

const here = path.dirname(fileURLToPath(import.meta.url));
const [multiboxd, goldenDir, specArg] = process.argv.slice(2);
if (!multiboxd || !goldenDir) {
  console.error('usage: node validate_live.mjs MULTIBOXD GOLDEN_DIR [SPEC]');
  process.exit(2);
}
const specPath = specArg || path.join(here, '..', '..', 'api', 'openapi.yaml');
const specText = readFileSync(specPath, 'utf8');
const spec = YAML.parse(specText);
const SPEC_ID = 'https://multibox.invalid/openapi.yaml';

// ------------------------------------------------------------- reporting
let passed = 0;
let failed = 0;
function ok(name) {
  passed += 1;
  console.log(`ok ${passed + failed} - ${name}`);
}
function notOk(name, why) {
  failed += 1;
  console.log(`not ok ${passed + failed} - ${name}`);
  for (const line of String(why).split('\n')) console.log(`  # ${line}`);
}
async function check(name, fn) {
  try {
    await fn();
    ok(name);
  } catch (e) {
    notOk(name, e && e.stack && !(e instanceof CheckError) ? e.stack : e.message || e);
  }
}
class CheckError extends Error {}
function assert(cond, msg) {
  if (!cond) throw new CheckError(msg);
}

// ------------------------------------------------------------- schemas
// The whole OpenAPI document is added as one schema so that its internal
// "#/components/..." references resolve; OpenAPI-only words are declared as
// annotation keywords so strict mode still catches misspelled schema words.
const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true });
addFormats(ajv);
ajv.addVocabulary(['openapi', 'info', 'servers', 'tags', 'security', 'paths', 'components',
  'example', 'discriminator', 'xml', 'externalDocs', 'jsonSchemaDialect', 'webhooks']);
ajv.addSchema(spec, SPEC_ID);
const compiled = new Map();
function esc(token) {
  return String(token).replace(/~/g, '~0').replace(/\//g, '~1');
}
function validatorAt(pointer) {
  if (!compiled.has(pointer)) {
    compiled.set(pointer, ajv.compile({ $ref: `${SPEC_ID}#${pointer}` }));
  }
  return compiled.get(pointer);
}
function validateAt(pointer, value, what) {
  const v = validatorAt(pointer);
  if (!v(value)) {
    const errs = v.errors.slice(0, 8).map((e) => `${e.instancePath || '/'} ${e.message}` +
      (e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ''));
    throw new CheckError(`${what} does not match ${pointer}:\n${errs.join('\n')}`);
  }
}
function deref(obj) {
  let pointer = null;
  while (obj && obj.$ref) {
    pointer = obj.$ref.replace(/^#/, '');
    obj = pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((o, k) => (o === undefined ? undefined : o[k]), spec);
  }
  return { obj, pointer };
}

// Where the spec documents an answer: [responseObject, jsonPointerOfIt].
// Unknown paths answer 404 as components.responses.NotFound; a path's
// undeclared method answers 405 as documented on that path's operations.
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
function matchPath(urlPath) {
  for (const tmpl of Object.keys(spec.paths)) {
    const re = new RegExp('^' + tmpl.split('/').map((seg) =>
      (/^\{.*\}$/.test(seg) ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/') + '$');
    if (re.test(urlPath)) return tmpl;
  }
  return null;
}
function documentedResponse(method, urlPath, status) {
  const tmpl = matchPath(urlPath.split('?')[0]);
  const m = method.toLowerCase();
  const code = String(status);
  if (tmpl === null) {
    assert(code === '404', `${method} ${urlPath}: path not in the spec, so only 404 is documented, got ${code}`);
    const name = urlPath.startsWith('/v2') ? 'V2NotFound' : 'NotFound';
    const r = spec.components.responses[name] || spec.components.responses.NotFound;
    return { resp: r, pointer: `/components/responses/${r === spec.components.responses[name] ? name : 'NotFound'}` };
  }
  const item = spec.paths[tmpl];
  let opMethod = m;
  if (!item[m]) {
    assert(code === '405', `${method} ${urlPath}: the spec has no ${m} on ${tmpl}, so 405 is expected, got ${code}`);
    opMethod = METHODS.find((x) => item[x] && item[x].responses && item[x].responses['405']);
    assert(opMethod, `${tmpl}: no operation documents 405`);
  }
  const responses = item[opMethod].responses;
  let key = code;
  if (!responses[key]) key = `${code[0]}XX`;
  if (!responses[key]) key = 'default';
  assert(responses[key], `${method} ${urlPath}: status ${code} is not documented for ${opMethod} ${tmpl}`);
  const base = `/paths/${esc(tmpl)}/${opMethod}/responses/${esc(key)}`;
  const { obj, pointer } = deref(responses[key]);
  return { resp: obj, pointer: pointer || base };
}

// Validates one live answer against the spec: documented status, documented
// media type, body matching its schema, required headers present.  Returns
// the parsed body (JSON) or the text.
function validateAnswer(method, urlPath, res) {
  const { resp, pointer } = documentedResponse(method, urlPath, res.status);
  for (const [name, h] of Object.entries(resp.headers || {})) {
    const hdr = deref(h).obj;
    if (hdr.required) {
      assert(res.headers[name.toLowerCase()] !== undefined,
        `${method} ${urlPath} ${res.status}: required header ${name} missing`);
    }
  }
  const ctype = (res.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (!resp.content) {
    assert(res.body.length === 0, `${method} ${urlPath} ${res.status}: the spec documents no body, got ${res.body.length} bytes`);
    return null;
  }
  const types = Object.keys(resp.content);
  assert(types.includes(ctype),
    `${method} ${urlPath} ${res.status}: Content-Type "${res.headers['content-type']}" is not one of ${types.join(', ')}`);
  const schemaPointer = `${pointer}/content/${esc(ctype)}/schema`;
  let body = res.body.toString('utf8');
  if (ctype === 'application/json' || ctype.endsWith('+json')) {
    try {
      body = JSON.parse(body);
    } catch (e) {
      throw new CheckError(`${method} ${urlPath} ${res.status}: body is not JSON: ${e.message}`);
    }
  }
  validateAt(schemaPointer, body, `${method} ${urlPath} ${res.status} body`);
  return body;
}

// ------------------------------------------------------------- HTTP
let port = 0; // of the server under test
function request(method, urlPath, { body, headers = {}, contentLength, toPort } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let payload = null;
    if (body !== undefined) {
      payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      if (h['Content-Type'] === undefined && !('Content-Type' in headers)) h['Content-Type'] = 'application/json';
      h['Content-Length'] = payload.length;
    }
    if (contentLength !== undefined) h['Content-Length'] = contentLength;
    for (const k of Object.keys(h)) if (h[k] === null) delete h[k];
    const req = http.request({ host: '127.0.0.1', port: toPort || port, method, path: urlPath, headers: h, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) });
          if (contentLength !== undefined) req.destroy();
        });
        res.on('error', reject);
      });
    req.setTimeout(60000, () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
    req.on('error', reject);
    if (contentLength !== undefined) {
      // Declares a body it never sends: the server must answer from the headers alone.
      req.flushHeaders();
    } else {
      req.end(payload || undefined);
    }
  });
}

// ------------------------------------------------------------- server
// One multiboxd child on 127.0.0.1 with an ephemeral port.
class Server {
  constructor(extraArgs = []) {
    this.args = ['--listen', '127.0.0.1:0', ...extraArgs];
    this.child = null;
    this.port = 0;
    this.log = '';
  }

  // Resolves once the server printed its port (tolerant: "listening on
  // 127.0.0.1:NNNN", "listening on http://127.0.0.1:NNNN/", "port=NNNN", JSON logs).
  start() {
    return new Promise((resolve, reject) => {
      const child = spawn(multiboxd, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.child = child;
      const timer = setTimeout(() => reject(new Error(`no "listening on" line within 20 s:\n${this.log}`)), 20000);
      const onData = (chunk) => {
        this.log += chunk.toString('utf8');
        if (this.log.length > 200000) this.log = this.log.slice(-100000);
        if (this.port) return;
        const m = /listening[^\n]*?(?:127\.0\.0\.1|localhost|\[?::1\]?|0\.0\.0\.0)["']?\s*[:,]?\s*(?:"?port"?\s*[:=]\s*)?(\d{1,5})/i.exec(this.log) ||
          /listening[^\n]*?port\D{1,4}(\d{1,5})/i.exec(this.log);
        if (m && Number(m[1]) > 0) {
          clearTimeout(timer);
          this.port = Number(m[1]);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`multiboxd exited early (code ${code}, signal ${sig}):\n${this.log}`));
      });
    });
  }

  running() {
    return this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  // SIGTERM (drain), SIGKILL after 40 s; resolves with the exit status.
  stop() {
    return new Promise((resolve) => {
      const child = this.child;
      if (!this.running()) {
        resolve({ code: child ? child.exitCode : null, signal: child ? child.signalCode : null });
        return;
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 40000);
      child.removeAllListeners('exit');
      child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
      child.kill('SIGTERM');
    });
  }

  kill() {
    if (this.running()) this.child.kill('SIGKILL');
  }
}
const servers = [];

// ------------------------------------------------------------- tensors
function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}
function toNested(t) {
  const build = (dims, off) => {
    if (dims.length === 1) return t.data.slice(off, off + dims[0]);
    const stride = product(dims.slice(1));
    const out = [];
    for (let i = 0; i < dims[0]; i += 1) out.push(build(dims.slice(1), off + i * stride));
    return out;
  };
  return build(t.shape, 0);
}
function toB64(t, dtype) {
  const arr = dtype === 'float64' ? Float64Array.from(t.data) : Float32Array.from(t.data);
  return { shape: t.shape, dtype, b64: Buffer.from(arr.buffer).toString('base64') };
}
function shapeOfNested(x) {
  const shape = [];
  while (Array.isArray(x)) {
    shape.push(x.length);
    x = x[0];
  }
  return shape;
}
// Checks that a tensor in a response is in the asked format and shape.
function checkTensor(t, format, shape, what) {
  if (format === 'nested') {
    assert(Array.isArray(t), `${what}: expected nested arrays`);
    if (product(shape) > 0) assert(JSON.stringify(shapeOfNested(t)) === JSON.stringify(shape), `${what}: nested shape ${JSON.stringify(shapeOfNested(t))} != ${JSON.stringify(shape)}`);
  } else if (format === 'flat') {
    assert(t && Array.isArray(t.data), `${what}: expected {shape, data}`);
    assert(JSON.stringify(t.shape) === JSON.stringify(shape), `${what}: shape ${JSON.stringify(t.shape)} != ${JSON.stringify(shape)}`);
    assert(t.data.length === product(shape), `${what}: ${t.data.length} values for shape ${JSON.stringify(shape)}`);
  } else {
    assert(t && typeof t.b64 === 'string' && t.dtype === 'float32', `${what}: expected {shape, dtype: float32, b64}`);
    assert(JSON.stringify(t.shape) === JSON.stringify(shape), `${what}: shape ${JSON.stringify(t.shape)} != ${JSON.stringify(shape)}`);
    assert(Buffer.from(t.b64, 'base64').length === 4 * product(shape), `${what}: b64 holds ${Buffer.from(t.b64, 'base64').length} bytes for shape ${JSON.stringify(shape)}`);
  }
}

// ------------------------------------------------------------- checks
const REQ_SCHEMA = `/paths/${esc('/v1/loss')}/post/requestBody/content/application~1json/schema`;

async function offlineChecks(cases) {
  await check('spec parses and every component schema compiles (ajv 2020-12, strict)', async () => {
    for (const name of Object.keys(spec.components.schemas)) validatorAt(`/components/schemas/${esc(name)}`);
  });
  await check('spec examples of /v1/loss validate against their schemas', async () => {
    const op = spec.paths['/v1/loss'].post;
    for (const [name, ex] of Object.entries(op.requestBody.content['application/json'].examples)) {
      validateAt(REQ_SCHEMA, ex.value, `request example ${name}`);
    }
    for (const [name, ex] of Object.entries(op.responses['200'].content['application/json'].examples)) {
      validateAt(`/paths/${esc('/v1/loss')}/post/responses/200/content/application~1json/schema`, ex.value, `response example ${name}`);
    }
  });
  for (const [name, c] of cases) {
    await check(`golden request ${name} matches the request schema`, async () => {
      validateAt(REQ_SCHEMA, c.request, `${name}.request`);
    });
  }
  await check('golden priors\' prior_box parameters match the PriorBox schema', async () => {
    for (const f of readdirSync(path.join(goldenDir, 'priors')).filter((x) => x.endsWith('.json')).sort()) {
      const p = JSON.parse(readFileSync(path.join(goldenDir, 'priors', f), 'utf8'));
      validateAt('/components/schemas/PriorBox', p.prior_box, `priors/${f} prior_box`);
    }
  });
}

async function liveLoss(name, body, { format, gradients, perImage, matches }, expected) {
  validateAt(REQ_SCHEMA, body, `${name} request`);
  const res = await request('POST', '/v1/loss', { body });
  assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
  const out = validateAnswer('POST', '/v1/loss', res);
  const B = body.targets.length;
  const [, A, C] = expected.grad_conf.shape;
  if (gradients === false) {
    assert(out.grad_loc === undefined && out.grad_conf === undefined, 'gradients: false still sent gradients');
  } else if (gradients === 'sparse') {
    for (const [key, width] of [['grad_loc', 4], ['grad_conf', C]]) {
      const g = out[key];
      assert(g && Array.isArray(g.rows), `${key}: expected {rows, values}`);
      for (let i = 1; i < g.rows.length; i += 1) assert(g.rows[i] > g.rows[i - 1], `${key}.rows not ascending`);
      g.rows.forEach((r) => assert(r < B * A, `${key}.rows: ${r} >= B*A`));
      checkTensor(g.values, format, [g.rows.length, width], `${key}.values`);
    }
  } else {
    checkTensor(out.grad_loc, format, [B, A, 4], 'grad_loc');
    checkTensor(out.grad_conf, format, [B, A, C], 'grad_conf');
  }
  if (perImage === false) assert(out.per_image === undefined, 'per_image: false still sent per_image');
  else assert(Array.isArray(out.per_image) && out.per_image.length === B, 'per_image: expected B items');
  if (matches) assert(Array.isArray(out.matches) && out.matches.length === B && out.matches.every((m) => m.length === A), 'matches: expected [B][A]');
  else assert(out.matches === undefined, 'matches: false still sent matches');
  // Not the numeric test (tests/service has it), only a guard that the body means what the spec says.
  const rel = Math.abs(out.loss - expected.loss) / Math.max(1e-12, Math.abs(expected.loss));
  assert(rel < 1e-4, `loss ${out.loss} vs golden ${expected.loss}`);
  assert(out.num_positives === expected.num_positives && out.num_negatives === expected.num_negatives, 'counts differ from golden');
}

async function errorCase(name, method, urlPath, opts, status, codes) {
  await check(name, async () => {
    const res = await request(method, urlPath, opts);
    assert(res.status === status, `expected ${status}, got ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    const out = validateAnswer(method, urlPath, res);
    if (codes) {
      const code = urlPath.startsWith('/v2') ? String(out.error).split(':')[0] : out.error.code;
      assert(codes.includes(code), `error code ${code} not one of ${codes.join(', ')}`);
    }
  });
}

// ------------------------------------------------------------- /v2 (OIP)
// The tiny case as an Open Inference Protocol request: tensors by name, the
// config's scalars as parameters, the variances split.
function oipRequestFor(c) {
  const r = c.request;
  const boxes = r.targets.flatMap((t) => t.boxes.flat());
  const labels = r.targets.flatMap((t) => t.labels);
  const counts = r.targets.map((t) => t.labels.length);
  const parameters = {};
  for (const [k, v] of Object.entries(r.config || {})) {
    if (k === 'variances') {
      if (v.length === 2) Object.assign(parameters, { variance_center: v[0], variance_size: v[1] });
      else Object.assign(parameters, { variance_cx: v[0], variance_cy: v[1], variance_w: v[2], variance_h: v[3] });
    } else {
      parameters[k] = v;
    }
  }
  const inputs = [
    { name: 'loc', datatype: 'FP32', shape: r.loc.shape, data: r.loc.data },
    { name: 'conf', datatype: 'FP32', shape: r.conf.shape, data: r.conf.data },
    { name: 'anchors', datatype: 'FP32', shape: r.anchors.shape, data: r.anchors.data },
    { name: 'gt_boxes', datatype: 'FP32', shape: [labels.length, 4], data: boxes },
    { name: 'gt_labels', datatype: 'INT32', shape: [labels.length], data: labels },
    { name: 'gt_counts', datatype: 'INT32', shape: [counts.length], data: counts },
  ];
  return { id: 'validate-live', parameters, inputs };
}
// The same request with every input in Triton's binary form.
function oipBinaryBody(json) {
  const raw = [];
  const inputs = json.inputs.map((t) => {
    const arr = t.datatype === 'INT32' ? Int32Array.from(t.data) : Float32Array.from(t.data);
    const bytes = Buffer.from(arr.buffer);
    raw.push(bytes);
    return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: bytes.length } };
  });
  const header = Buffer.from(JSON.stringify({ ...json, inputs, parameters: { ...json.parameters, binary_data_output: true } }));
  return { header, body: Buffer.concat([header, ...raw]) };
}

async function v2Checks(cases) {
  const probe = await request('GET', '/v2/health/live');
  if (probe.status === 404) {
    console.log('ok - /v2 checks # SKIP the server does not serve /v2 yet (issue 4)');
    return;
  }
  for (const url of ['/v2', '/v2/health/live', '/v2/health/ready', '/v2/models/multibox_loss', '/v2/models/multibox_loss/ready']) {
    await check(`GET ${url}`, async () => {
      const res = await request('GET', url);
      assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
      validateAnswer('GET', url, res);
    });
  }
  const tiny = cases.get('tiny');
  const infer = '/v2/models/multibox_loss/infer';
  const json = oipRequestFor(tiny);
  await check('POST /v2/.../infer tiny with JSON data', async () => {
    validateAt(`/paths/${esc('/v2/models/{model_name}/infer')}/post/requestBody/content/application~1json/schema`, json, 'OIP request');
    const res = await request('POST', infer, { body: json });
    assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    const out = validateAnswer('POST', infer, res);
    const loss = out.outputs.find((o) => o.name === 'loss');
    assert(loss && Math.abs(loss.data[0] - tiny.expected.loss) <= 1e-4 * Math.abs(tiny.expected.loss), 'loss output differs from golden');
  });
  await check('POST /v2/.../infer tiny with binary tensors in and out', async () => {
    const { header, body } = oipBinaryBody(json);
    const res = await request('POST', infer, {
      body, headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': String(header.length) },
    });
    assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    validateAnswer('POST', infer, res);
    const n = Number(res.headers['inference-header-content-length']);
    assert(Number.isInteger(n) && n > 0 && n <= res.body.length, `Inference-Header-Content-Length ${res.headers['inference-header-content-length']}`);
    const head = JSON.parse(res.body.subarray(0, n).toString('utf8'));
    validateAt('/components/schemas/V2InferResponse', head, 'binary answer header');
    const sizes = head.outputs.reduce((a, o) => a + ((o.parameters && o.parameters.binary_data_size) || 0), 0);
    assert(sizes === res.body.length - n, `binary_data_size adds up to ${sizes}, ${res.body.length - n} bytes follow the header`);
  });
  await check('POST /v2/.../infer tiny without Content-Type (tritonclient)', async () => {
    const { header, body } = oipBinaryBody(json);
    const res = await request('POST', infer, {
      body, headers: { 'Content-Type': null, 'Inference-Header-Content-Length': String(header.length) },
    });
    assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    validateAnswer('POST', infer, res);
  });
  await errorCase('GET /v2/models/resnet50 -> 404', 'GET', '/v2/models/resnet50', {}, 404, ['not_found']);
  await errorCase('GET /v2/.../infer -> 405', 'GET', infer, {}, 405, ['method_not_allowed']);
  await errorCase('POST /v2/.../infer malformed JSON -> 400', 'POST', infer, { body: '{"inputs": [' }, 400, ['malformed_json']);
  await errorCase('POST /v2/.../infer header length beyond the body -> 400', 'POST', infer,
    { body: '{}', headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': '1000' } }, 400, ['bad_framing']);
  await errorCase('POST /v2/.../infer missing gt_counts -> 422', 'POST', infer,
    { body: { ...json, inputs: json.inputs.filter((t) => t.name !== 'gt_counts') } }, 422, ['missing_field']);
}

async function liveChecks(cases) {
  const tiny = cases.get('tiny');
  assert(tiny, 'golden case tiny.json missing');

  await check('GET /livez', async () => {
    const res = await request('GET', '/livez');
    assert(res.status === 200, `status ${res.status}`);
    validateAnswer('GET', '/livez', res);
  });
  await check('GET /readyz (becomes 200 after start-up)', async () => {
    let res;
    for (let i = 0; i < 100; i += 1) {
      res = await request('GET', '/readyz');
      validateAnswer('GET', '/readyz', res);
      if (res.status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(res.status === 200, `still ${res.status} after 10 s`);
  });
  await check('GET /openapi.yaml serves this spec', async () => {
    const res = await request('GET', '/openapi.yaml');
    assert(res.status === 200, `status ${res.status}`);
    validateAnswer('GET', '/openapi.yaml', res);
    assert(res.body.toString('utf8') === specText, 'served document differs from api/openapi.yaml');
  });

  // POST /v1/loss: the tiny case in every output form and several input forms.
  const base = tiny.request;
  const variants = [];
  for (const format of ['nested', 'flat', 'b64']) {
    for (const gradients of [true, 'sparse']) {
      variants.push({ format, gradients, perImage: true, matches: true });
    }
  }
  variants.push({ format: 'nested', gradients: false, perImage: false, matches: false });
  for (const v of variants) {
    await check(`POST /v1/loss tiny, tensor_format ${v.format}, gradients ${v.gradients}, per_image ${v.perImage}, matches ${v.matches}`, async () => {
      const body = { ...base, outputs: { gradients: v.gradients, per_image: v.perImage, matches: v.matches, tensor_format: v.format } };
      await liveLoss('tiny', body, v, tiny.expected);
    });
  }
  await check('POST /v1/loss tiny, defaults (no config, no outputs)', async () => {
    const body = { anchors: base.anchors, loc: base.loc, conf: base.conf, targets: base.targets, config: { bipartite: base.config.bipartite } };
    validateAt(REQ_SCHEMA, body, 'request');
    const res = await request('POST', '/v1/loss', { body });
    assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    const out = validateAnswer('POST', '/v1/loss', res);
    checkTensor(out.grad_loc, 'nested', tiny.expected.grad_loc.shape, 'grad_loc (default nested, dense)');
    assert(Array.isArray(out.per_image), 'per_image is on by default');
    assert(out.matches === undefined, 'matches is off by default');
  });
  await check('POST /v1/loss tiny with nested, float64 b64 and float32 b64 input tensors', async () => {
    const body = { ...base, anchors: toNested(base.anchors), loc: toB64(base.loc, 'float64'), conf: toB64(base.conf, 'float32'),
      outputs: { tensor_format: 'flat', matches: true } };
    await liveLoss('tiny', body, { format: 'flat', gradients: true, perImage: true, matches: true }, tiny.expected);
  });
  const b2 = cases.get('ssd300_voc_b2');
  if (b2) {
    const priors = JSON.parse(readFileSync(path.join(goldenDir, 'priors', 'ssd300_voc.json'), 'utf8'));
    await check('POST /v1/loss ssd300_voc_b2 with anchors {preset: ssd300_voc}, sparse b64', async () => {
      const body = { ...b2.request, anchors: { preset: 'ssd300_voc' }, outputs: { gradients: 'sparse', tensor_format: 'b64' } };
      await liveLoss('ssd300_voc_b2', body, { format: 'b64', gradients: 'sparse', perImage: true, matches: false }, b2.expected);
    });
    await check('POST /v1/loss ssd300_voc_b2 with anchors {prior_box: ...}, gradients false', async () => {
      const body = { ...b2.request, anchors: { prior_box: priors.prior_box }, outputs: { gradients: false, per_image: false } };
      await liveLoss('ssd300_voc_b2', body, { format: 'nested', gradients: false, perImage: false, matches: false }, b2.expected);
    });
  }
  for (const [name, c] of cases) {
    if (name === 'tiny' || name === 'ssd300_voc_b2') continue;
    await check(`POST /v1/loss golden ${name} (flat, dense, matches)`, async () => {
      await liveLoss(name, c.request, { format: c.request.outputs.tensor_format || 'flat', gradients: c.request.outputs.gradients,
        perImage: c.request.outputs.per_image, matches: c.request.outputs.matches }, c.expected);
    });
  }

  // GET /v1/anchors/{preset}
  const counts = { ssd300_voc: 8732, ssd300_coco: 8732, ssd512_voc: 24564 };
  for (const preset of Object.keys(counts)) {
    for (const format of [null, 'nested', 'flat', 'b64']) {
      const url = `/v1/anchors/${preset}${format ? `?tensor_format=${format}` : ''}`;
      await check(`GET ${url}`, async () => {
        const res = await request('GET', url);
        assert(res.status === 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
        const out = validateAnswer('GET', url, res);
        checkTensor(out, format || 'nested', [counts[preset], 4], 'anchors');
      });
    }
  }

  // Errors.
  await errorCase('GET /v1/anchors/ssd999 -> 404', 'GET', '/v1/anchors/ssd999', {}, 404, ['unknown_preset', 'not_found']);
  await errorCase('GET /v1/anchors/ssd300_voc?tensor_format=xml -> 422', 'GET', '/v1/anchors/ssd300_voc?tensor_format=xml', {}, 422, null);
  await errorCase('GET /no/such/path -> 404', 'GET', '/no/such/path', {}, 404, ['not_found']);
  await errorCase('GET /v1/loss -> 405', 'GET', '/v1/loss', {}, 405, ['method_not_allowed']);
  await errorCase('POST /livez -> 405', 'POST', '/livez', { body: '{}' }, 405, ['method_not_allowed']);
  await errorCase('DELETE /v1/anchors/ssd300_voc -> 405', 'DELETE', '/v1/anchors/ssd300_voc', {}, 405, ['method_not_allowed']);
  await errorCase('POST /v1/loss malformed JSON -> 400', 'POST', '/v1/loss', { body: '{"anchors": [' }, 400, ['malformed_json']);
  await errorCase('POST /v1/loss not JSON at all -> 400', 'POST', '/v1/loss', { body: 'hello' }, 400, ['malformed_json']);
  await errorCase('POST /v1/loss text/plain -> 415', 'POST', '/v1/loss',
    { body: JSON.stringify(base), headers: { 'Content-Type': 'text/plain' } }, 415, ['unsupported_media_type']);
  // Right length for the shape, one character outside the alphabet.
  const badB64 = toB64(base.loc, 'float32');
  badB64.b64 = `${badB64.b64.slice(0, 100)}!${badB64.b64.slice(101)}`;
  await errorCase('POST /v1/loss bad base64 -> 400', 'POST', '/v1/loss',
    { body: { ...base, loc: badB64 } }, 400, ['bad_base64']);
  await errorCase('POST /v1/loss unknown config key -> 422', 'POST', '/v1/loss',
    { body: { ...base, config: { ...base.config, overlap: 0.5 } } }, 422, ['unknown_field']);
  await errorCase('POST /v1/loss unknown top-level key -> 422', 'POST', '/v1/loss',
    { body: { ...base, extra: 1 } }, 422, ['unknown_field']);
  await errorCase('POST /v1/loss missing conf -> 422', 'POST', '/v1/loss',
    { body: { anchors: base.anchors, loc: base.loc, targets: base.targets } }, 422, ['missing_field']);
  await errorCase('POST /v1/loss config out of range -> 422', 'POST', '/v1/loss',
    { body: { ...base, config: { ...base.config, overlap_threshold: 1.5 } } }, 422, ['bad_config', 'out_of_range']);
  await errorCase('POST /v1/loss unknown enum value -> 422', 'POST', '/v1/loss',
    { body: { ...base, config: { ...base.config, loc_loss: 'l3' } } }, 422, ['bad_config', 'out_of_range']);
  await errorCase('POST /v1/loss label out of range -> 422', 'POST', '/v1/loss',
    { body: { ...base, targets: [{ ...base.targets[0], labels: base.targets[0].labels.map(() => 99) }] } }, 422, ['bad_label']);
  await errorCase('POST /v1/loss degenerate box -> 422', 'POST', '/v1/loss',
    { body: { ...base, targets: [{ ...base.targets[0], boxes: base.targets[0].boxes.map(() => [0.5, 0.5, 0.4, 0.9]) }] } }, 422, ['degenerate_box']);
  await errorCase('POST /v1/loss shapes disagree -> 422', 'POST', '/v1/loss',
    { body: { ...base, targets: [base.targets[0], base.targets[0]] } }, 422, ['shape_mismatch']);
  await errorCase('POST /v1/loss B = 0 -> 422', 'POST', '/v1/loss',
    { body: { ...base, loc: { shape: [0, base.loc.shape[1], 4], data: [] }, conf: { shape: [0, ...base.conf.shape.slice(1)], data: [] }, targets: [] } },
    422, null);
  await errorCase('POST /v1/loss wrong type -> 422', 'POST', '/v1/loss',
    { body: { ...base, config: { ...base.config, use_difficult: 'yes' } } }, 422, ['wrong_type', 'bad_config']);
  await errorCase('POST /v1/loss 100 MB declared, nothing sent -> 413', 'POST', '/v1/loss',
    { headers: { 'Content-Type': 'application/json' }, contentLength: 100 * 1024 * 1024 }, 413, ['payload_too_large']);

  await v2Checks(cases);

  // /metrics last, so that it has counted the traffic above.
  await check('GET /metrics lists every metric the spec names', async () => {
    const res = await request('GET', '/metrics');
    assert(res.status === 200, `status ${res.status}`);
    const text = validateAnswer('GET', '/metrics', res);
    const names = [...new Set(spec.paths['/metrics'].get.description.match(/`((?:multibox|process)_[a-z_]+)/g).map((s) => s.slice(1)))];
    const missing = names.filter((n) => !new RegExp(`^${n}(_bucket|_sum|_count)?(\\{|\\s)`, 'm').test(text));
    assert(missing.length === 0, `metrics missing: ${missing.join(', ')}`);
    assert(/^multibox_http_requests_total\{[^}]*handler="[^"]*"[^}]*code="200"/m.test(text) ||
      /^multibox_http_requests_total\{[^}]*code="200"[^}]*handler=/m.test(text), 'no {handler,code} series with code 200');
  });
}

// 503 is hard to provoke on purpose: a second server with one worker and
// no queue gets several big requests at once; every answer must be a 200 or
// a documented 503 (Retry-After, error body).  Passes without a 503 when the
// machine happened to keep up, and says so.
async function overloadCheck(cases) {
  const b2 = cases.get('ssd300_voc_b2');
  if (!b2) return;
  const srv = new Server(['--workers', '1', '--queue-depth', '0']);
  servers.push(srv);
  await check('second multiboxd (--workers 1 --queue-depth 0) starts', () => srv.start());
  if (!srv.port) return;
  const body = JSON.stringify({ ...b2.request, outputs: { gradients: false, per_image: false } });
  let seen503 = 0;
  await check('8 concurrent ssd300_voc_b2 requests on 1 worker, no queue: each a 200 or a documented 503', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () =>
      request('POST', '/v1/loss', { body, toPort: srv.port })));
    for (const res of answers) {
      assert(res.status === 200 || res.status === 503, `status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
      const out = validateAnswer('POST', '/v1/loss', res);
      if (res.status === 503) {
        seen503 += 1;
        assert(['overloaded'].includes(out.error.code), `503 code ${out.error.code}`);
      }
    }
    console.log(`  # ${seen503} of 8 answered 503`);
  });
  await check('second multiboxd stops on SIGTERM with exit code 0', async () => {
    const { code, signal } = await srv.stop();
    assert(code === 0, `exit code ${code}, signal ${signal}`);
  });
}

// ------------------------------------------------------------- main
async function main() {
  const cases = new Map();
  const dir = path.join(goldenDir, 'cases');
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    cases.set(f.replace(/\.json$/, ''), JSON.parse(readFileSync(path.join(dir, f), 'utf8')));
  }
  await offlineChecks(cases);

  if (!existsSync(multiboxd)) {
    notOk('multiboxd exists', `${multiboxd} not found`);
  } else {
    const srv = new Server(['--workers', '2']);
    servers.push(srv);
    await check('multiboxd starts on 127.0.0.1 port 0 and prints its port', () => srv.start());
    if (srv.port) {
      port = srv.port;
      // Rejects if the server dies while the checks run (stop() drops this listener).
      const died = new Promise((resolve, reject) => srv.child.once('exit', (c, sig) => {
        reject(new Error(`multiboxd died during the checks (code ${c}, signal ${sig})`));
      }));
      died.catch(() => {});
      try {
        await Promise.race([liveChecks(cases), died]);
      } catch (e) {
        notOk('live checks ran to the end', e.stack || e);
      }
      await check('multiboxd stops on SIGTERM with exit code 0', async () => {
        const { code, signal } = await srv.stop();
        assert(code === 0, `exit code ${code}, signal ${signal}`);
      });
      await overloadCheck(cases);
    }
  }
  if (failed > 0) {
    for (const srv of servers) {
      console.log(`# log of multiboxd ${srv.args.join(' ')} (last 4000 characters):`);
      for (const line of srv.log.slice(-4000).split('\n')) console.log(`# ${line}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

function killAll() {
  for (const srv of servers) srv.kill();
}
process.on('SIGINT', () => { killAll(); process.exit(130); });
process.on('SIGTERM', () => { killAll(); process.exit(143); });
main().catch((e) => {
  console.log(`not ok - unexpected failure\n  # ${e.stack || e}`);
  killAll();
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exitCode = 1;
}).finally(killAll);
