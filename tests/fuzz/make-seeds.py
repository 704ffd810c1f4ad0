#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/fuzz_*.c).

Usage: make-seeds.py OUT_DIR [--golden DIR] [--source-root DIR]

OUT_DIR/<target>/ receives small inputs for v1_json, oip, frame and base64:
  - every golden case (MBX_GOLDEN_DIR, default ../shared/golden beside the
    source tree) shrunk to a few anchors (the best anchor of each GT box plus
    some others) and at most 3 boxes per image, written as /v1 bodies in every
    tensor form (flat, nested, b64 float32 / float64) with varied outputs, and
    as OIP requests (binary FP32 / FP16 / BF16 / FP64, JSON data, INT64
    labels, BOOL difficult flags, parameters from the case's config);
  - the codec's own test inputs (tests/data/valid, invalid, oip/*.json);
  - the committed seeds of tests/fuzz/seeds/<target>/.
OIP inputs carry the prefix of fuzz.h: a flags byte and the 2-byte
little-endian header length.  Names are content hashes, so reruns are
idempotent.  Only the standard library and numpy-free struct packing.
"""
import base64
import glob
import hashlib
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))


def write(out, target, data, tag=''):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = (tag + '-' if tag else '') + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def num(x):
    """A float32 value as JSON text that reads back as the same float32."""
    return float('%.9g' % x)


# ------------------------------------------------------------------ shrinking

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def rows(t, width):
    d = t['data']
    return [d[i:i + width] for i in range(0, len(d), width)]


def shrink(req, num_anchors=10, max_boxes=3):
    """Keeps the best anchor of every kept GT box plus the first others, up to num_anchors."""
    anchors = rows(req['anchors'], 4)
    B, A, C = req['conf']['shape']
    targets = []
    for t in req['targets']:
        n = min(len(t['labels']), max_boxes)
        nt = {'boxes': t['boxes'][:n], 'labels': t['labels'][:n]}
        if 'difficult' in t:
            nt['difficult'] = t['difficult'][:n]
        targets.append(nt)
    keep = []
    for t in targets:
        for box in t['boxes']:
            best = max(range(A), key=lambda a: iou(anchors[a], box))
            if best not in keep:
                keep.append(best)
            # a near miss too, for the ignore band and the negatives
            second = sorted(range(A), key=lambda a: -iou(anchors[a], box))[1]
            if second not in keep and len(keep) < num_anchors:
                keep.append(second)
    a = 0
    while len(keep) < num_anchors and a < A:
        if a not in keep:
            keep.append(a)
        a += 1
    keep = sorted(keep[:max(num_anchors, len(keep))])
    loc = req['loc']['data']
    conf = req['conf']['data']
    K = len(keep)
    new_loc, new_conf = [], []
    for b in range(B):
        for a in keep:
            new_loc += loc[(b * A + a) * 4:(b * A + a) * 4 + 4]
            new_conf += conf[(b * A + a) * C:(b * A + a) * C + C]
    out = dict(req)
    out['anchors'] = {'shape': [K, 4], 'data': [x for a in keep for x in anchors[a]]}
    out['loc'] = {'shape': [B, K, 4], 'data': new_loc}
    out['conf'] = {'shape': [B, K, C], 'data': new_conf}
    out['targets'] = targets
    return out


# ---------------------------------------------------------------- /v1 forms

def nested(t):
    shape, data = t['shape'], [num(x) for x in t['data']]

    def build(level, off):
        if level == len(shape) - 1:
            return data[off:off + shape[level]]
        step = 1
        for s in shape[level + 1:]:
            step *= s
        return [build(level + 1, off + i * step) for i in range(shape[level])]
    return build(0, 0)


def b64(t, dtype):
    fmt = '<%d%s' % (len(t['data']), 'f' if dtype == 'float32' else 'd')
    return {'shape': t['shape'], 'dtype': dtype,
            'b64': base64.b64encode(struct.pack(fmt, *t['data'])).decode()}


def flat(t):
    return {'shape': t['shape'], 'data': [num(x) for x in t['data']]}


def v1_variants(req):
    forms = {
        'flat': flat,
        'nested': nested,
        'b64': lambda t: b64(t, 'float32'),
        'b64f64': lambda t: b64(t, 'float64'),
    }
    outputs = [
        {'gradients': True, 'per_image': True, 'matches': True, 'tensor_format': 'flat'},
        {'gradients': 'sparse', 'per_image': False, 'matches': True, 'tensor_format': 'nested'},
        {'gradients': False},
        {'gradients': True, 'tensor_format': 'b64'},
    ]
    for i, (name, form) in enumerate(forms.items()):
        r = dict(req)
        for k in ('anchors', 'loc', 'conf'):
            r[k] = form(req[k])
        r['targets'] = [dict(t, boxes=[[num(x) for x in b] for b in t['boxes']])
                        for t in req['targets']]
        r['outputs'] = outputs[i % len(outputs)]
        yield name, json.dumps(r, separators=(',', ':'))
    # config left to its defaults, boxes as a flat TENSOR
    r = {k: req[k] for k in ('anchors', 'loc', 'conf')}
    r['targets'] = [{'boxes': {'shape': [len(t['boxes']), 4],
                               'data': [num(x) for b in t['boxes'] for x in b]},
                     'labels': t['labels']} for t in req['targets']]
    yield 'defaults', json.dumps(r, separators=(',', ':'))


# ----------------------------------------------------------------- OIP forms

SIZES = {'FP32': 4, 'FP16': 2, 'BF16': 2, 'FP64': 8, 'INT32': 4, 'INT64': 8, 'BOOL': 1,
         'UINT8': 1, 'INT8': 1}


def f16_bits(x):
    return struct.unpack('<H', struct.pack('<e', x))[0]


def bf16_bits(x):
    if isinstance(x, float) and math.isnan(x):
        return 0x7fc0
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16) & 0xffff


def value(v):
    if isinstance(v, str):
        return {'nan': float('nan'), 'inf': float('inf'), '-inf': float('-inf')}[v]
    return v


def pack(dtype, values):
    vals = [value(v) for v in values]
    if dtype == 'FP32':
        return struct.pack('<%df' % len(vals), *vals)
    if dtype == 'FP64':
        return struct.pack('<%dd' % len(vals), *vals)
    if dtype == 'FP16':
        out = b''
        for v in vals:
            try:
                out += struct.pack('<H', f16_bits(v))
            except OverflowError:
                out += struct.pack('<H', 0x7c00 if v > 0 else 0xfc00)
        return out
    if dtype == 'BF16':
        return b''.join(struct.pack('<H', bf16_bits(v)) for v in vals)
    if dtype == 'INT32':
        return struct.pack('<%di' % len(vals), *[int(v) for v in vals])
    if dtype == 'INT64':
        return struct.pack('<%dq' % len(vals), *[int(v) for v in vals])
    if dtype in ('BOOL', 'UINT8'):
        return bytes(int(v) & 0xff for v in vals)
    if dtype == 'INT8':
        return struct.pack('<%db' % len(vals), *[int(v) for v in vals])
    raise ValueError(dtype)


def oip_input(header, binary=None, flags=0, header_len=None):
    """The fuzz input: flags, 2-byte header length, header, binary bytes."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(',', ':')).encode()
    body = text + (binary or b'')
    hl = len(text) if header_len is None else header_len
    if not binary and header_len is None:
        flags |= 2  # no header length: all JSON
        hl = 0
    if hl < 0 or hl > 0xffff:
        return None
    return bytes([flags & 0xff]) + struct.pack('<H', hl) + body


def oip_params(cfg):
    p = {k: v for k, v in cfg.items() if k not in ('variances', 'box_format')}
    p['box_format'] = cfg.get('box_format', 'xyxy')
    var = cfg.get('variances', [0.1, 0.2])
    if len(var) == 2:
        p['variance_center'], p['variance_size'] = var
    else:
        p['variance_cx'], p['variance_cy'], p['variance_w'], p['variance_h'] = var
    return p


def oip_variants(req):
    B, A, C = req['conf']['shape']
    boxes = [num(x) for t in req['targets'] for b in t['boxes'] for x in b]
    labels = [l for t in req['targets'] for l in t['labels']]
    counts = [len(t['labels']) for t in req['targets']]
    N = len(labels)
    difficult = None
    if any('difficult' in t for t in req['targets']):
        difficult = [int(bool(d)) for t in req['targets']
                     for d in t.get('difficult', [False] * len(t['labels']))]
    params = oip_params(req.get('config', {}))
    plans = [
        # (loc/conf dtype, labels dtype, JSON data?, flags, extra parameters, outputs)
        ('FP32', 'INT32', False, 0x00, {}, None),
        ('FP16', 'INT64', False, 0x31, {'gradient_datatype': 'FP16', 'binary_data_output': True}, None),
        ('BF16', 'INT32', False, 0x80, {'gradient_datatype': 'BF16', 'binary_data_output': True},
         [{'name': 'loss'}, {'name': 'grad_conf_rows', 'parameters': {'binary_data': True}},
          {'name': 'grad_conf_values'}, {'name': 'grad_loc_rows'}, {'name': 'grad_loc_values'}]),
        ('FP64', 'INT64', False, 0x40, {}, [{'name': 'per_image_loss'}, {'name': 'grad_loc'}]),
        ('FP32', 'INT32', True, 0x00, {}, None),
    ]
    for dtype, ltype, as_json, flags, extra, outputs in plans:
        ins = [('loc', dtype, [B, A, 4], req['loc']['data']),
               ('conf', dtype, [B, A, C], req['conf']['data']),
               ('anchors', 'FP32', [A, 4], req['anchors']['data']),
               ('gt_boxes', 'FP32', [N, 4], boxes),
               ('gt_labels', ltype, [N], labels),
               ('gt_counts', 'INT32', [B], counts)]
        if difficult is not None:
            ins.append(('gt_difficult', 'BOOL', [N], difficult))
        header = {'id': 'seed', 'inputs': [], 'parameters': dict(params, **extra)}
        if outputs:
            header['outputs'] = outputs
        binary = b''
        for name, dt, shape, vals in ins:
            t = {'name': name, 'datatype': dt, 'shape': shape}
            if as_json:
                t['data'] = ([bool(v) for v in vals] if dt == 'BOOL'
                             else [num(v) for v in vals] if dt.startswith(('FP', 'BF')) else vals)
            else:
                raw = pack(dt, vals)
                t['parameters'] = {'binary_data_size': len(raw)}
                binary += raw
            header['inputs'].append(t)
        data = oip_input(header, binary, flags)
        if data:
            yield '%s-%s%s' % (dtype, ltype, '-json' if as_json else ''), data


def oip_test_case(c):
    """A case of tests/data/oip (see its generate.py) as a fuzz input."""
    binary = b''.join(pack(b['dtype'], b['values']) for b in c.get('binary', []))
    if 'header_text' in c:
        text = c['header_text'].encode()
    else:
        text = json.dumps(c['header'], separators=(',', ':')).encode()
    body = text + binary
    if 'append_hex' in c:
        body += bytes.fromhex(c['append_hex'])
    if 'truncate' in c:
        body = body[:len(body) - c['truncate']]
    hl = c.get('header_length', 'exact')
    if hl == 'absent':
        return bytes([2, 0, 0]) + body
    n = len(text) + (hl.get('delta', 0) if isinstance(hl, dict) else 0)
    if n < 0 or n > 0xffff:
        return None
    return bytes([0]) + struct.pack('<H', n) + body


# -------------------------------------------------------------------- base64

def base64_seeds(req):
    floats = req['loc']['data'][:7]
    raw = struct.pack('<%df' % len(floats), *floats)
    for n in (0, 1, 2, 3, 4, 5, 6, 12, len(raw)):
        enc = base64.b64encode(raw[:n])
        yield b'\x00' + enc        # decode
        yield b'\x02' + enc        # decode into one byte too few
        yield b'\x01' + raw[:n]    # encode then decode
    for bad in (b'AAA', b'A===', b'AB==CD==', b'AB=C', b'AAB=', b'AB\nC', b'-_AA', b'QUJD\x00'):
        yield b'\x00' + bad


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    out = argv[1]
    golden = os.environ.get('MBX_GOLDEN_DIR', os.path.join(ROOT, '..', 'shared', 'golden'))
    root = ROOT
    args = argv[2:]
    while args:
        if args[0] == '--golden':
            golden = args[1]
        elif args[0] == '--source-root':
            root = args[1]
        else:
            sys.exit('unknown argument ' + args[0])
        args = args[2:]
    cases = sorted(glob.glob(os.path.join(golden, 'cases', '*.json')))
    if not cases:
        sys.exit('no golden cases in %s' % golden)
    count = {}

    def put(target, data, tag=''):
        if data is None:
            return
        write(out, target, data, tag)
        count[target] = count.get(target, 0) + 1

    for path in cases:
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            case = json.load(f)
        req = shrink(case['request'])
        for form, text in v1_variants(req):
            put('v1_json', text, name + '-' + form)
        for form, data in oip_variants(req):
            put('oip', data, name + '-' + form)
            put('frame', data, name + '-' + form)
        if name == 'tiny':
            for data in base64_seeds(req):
                put('base64', data, 'tiny')
    for path in sorted(glob.glob(os.path.join(root, 'tests', 'data', 'valid', '*.json')) +
                       glob.glob(os.path.join(root, 'tests', 'data', 'invalid', '*', 'input.json'))):
        with open(path, 'rb') as f:
            data = f.read()
        if len(data) <= 65536:
            stem = os.path.basename(path).split('.')[0]
            if stem == 'input':
                stem = os.path.basename(os.path.dirname(path))
            put('v1_json', data, 'data-' + stem)
    for path in sorted(glob.glob(os.path.join(root, 'tests', 'data', 'oip', '*.json'))):
        with open(path) as f:
            c = json.load(f)
        data = oip_test_case(c)
        tag = 'data-' + os.path.splitext(os.path.basename(path))[0]
        put('oip', data, tag)
        put('frame', data, tag)
    for target in ('v1_json', 'oip', 'frame', 'base64'):
        for path in sorted(glob.glob(os.path.join(HERE, 'seeds', target, '*'))):
            with open(path, 'rb') as f:
                put(target, f.read(), 'seed')
    for target in sorted(count):
        print('%s: %d seeds in %s' % (target, count[target], os.path.join(out, target)))


if __name__ == '__main__':
    main(sys.argv)
