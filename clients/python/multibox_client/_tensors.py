"""Tensor conversions of the multibox client: numpy/torch inputs to wire bytes and back.

Turns numpy arrays, torch tensors (duck-typed: torch is never imported here) and nested
lists into little-endian numpy arrays; encodes float32 to float16 and bfloat16 with
round-to-nearest-even (bfloat16 is not a numpy type, so it travels as uint16 bit patterns);
decodes every TENSOR form of the /v1 contract (nested lists, {"shape","data"},
{"shape","dtype","b64"}). Pure functions: no I/O, inputs are never modified.
"""

import base64

import numpy as np

# Open Inference Protocol datatypes the client reads or writes, as little-endian numpy dtypes.
# BF16 has no numpy dtype: its values travel as uint16 bit patterns (the top half of a float32).
OIP_DTYPES = {
    "BOOL": np.dtype("u1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

_UPLOAD_NAMES = {
    None: "auto", "auto": "auto",
    "fp32": "FP32", "float32": "FP32",
    "fp16": "FP16", "float16": "FP16", "half": "FP16",
    "bf16": "BF16", "bfloat16": "BF16",
}


def upload_datatype_name(upload):
    """Normalizes an upload option ("auto", "fp32", "fp16", "bf16", aliases) or raises ValueError."""
    key = upload.lower() if isinstance(upload, str) else upload
    if key not in _UPLOAD_NAMES:
        raise ValueError("upload must be one of 'auto', 'fp32', 'fp16', 'bf16', got %r" % (upload,))
    return _UPLOAD_NAMES[key]


def is_torch_tensor(x):
    """True for a torch.Tensor (or subclass such as nn.Parameter), without importing torch."""
    mod = type(x).__module__ or ""
    return mod.split(".")[0] == "torch" and hasattr(x, "detach") and hasattr(x, "dtype")


def _torch_to_numpy(x):
    """(numpy array, is_bf16_bits) for a torch tensor on any device, detached, contiguous."""
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    x = x.contiguous()
    if str(x.dtype) == "torch.bfloat16":
        import torch  # only reached when the caller already uses torch

        return x.view(torch.int16).numpy().view(np.uint16), True
    return x.numpy(), False


def as_array(x):
    """Any array-like (numpy, torch, list) as (numpy array, is_bf16_bits)."""
    if is_torch_tensor(x):
        return _torch_to_numpy(x)
    return np.asarray(x), False


def f32_to_bf16_bits(a):
    """float32 values -> bfloat16 bit patterns (uint16), round to nearest, ties to even.

    NaN stays NaN (quiet); values beyond bfloat16's range round to infinity as IEEE does.
    """
    a = np.ascontiguousarray(a, dtype="<f4")
    u = a.view("<u4")
    # In uint32 the sum can only wrap for NaN bit patterns (>= 0xFFFF8000), fixed below.
    rounded = u + np.uint32(0x7FFF)
    rounded += (u >> np.uint32(16)) & np.uint32(1)
    rounded >>= np.uint32(16)
    out = rounded.astype("<u2")
    nan = np.isnan(a)
    if nan.any():
        out[nan] = (u[nan] >> np.uint32(16)).astype("<u2") | np.uint16(0x0040)
    return out


def bf16_bits_to_f32(bits):
    """bfloat16 bit patterns (uint16) -> float32 values (exact widening)."""
    bits = np.ascontiguousarray(bits, dtype="<u2")
    return (bits.astype("<u4") << 16).view("<f4")


def float32_values(x):
    """Values of a float array-like as a C-contiguous little-endian float32 numpy array.

    bfloat16 and float16 inputs are widened exactly; float64 is rounded to nearest.
    """
    arr, bf16 = as_array(x)
    if bf16:
        return bf16_bits_to_f32(arr)
    return np.ascontiguousarray(arr, dtype="<f4")


def float_payload(x, upload="auto"):
    """(OIP datatype, numpy array holding the wire bytes) of a float tensor for upload.

    upload "auto" keeps float16 and bfloat16 inputs in their own 2-byte form and sends
    everything else as FP32 (the service computes in float32, so FP64 would only double
    the bytes); "FP32", "FP16", "BF16" force that form. Raises ValueError when rounding to
    a half type turns a finite value into an infinity.
    """
    kind = upload_datatype_name(upload)
    arr, bf16 = as_array(x)
    if kind == "auto":
        if bf16:
            return "BF16", np.ascontiguousarray(arr, dtype="<u2")
        if arr.dtype == np.float16:
            return "FP16", np.ascontiguousarray(arr, dtype="<f2")
        kind = "FP32"
    values = bf16_bits_to_f32(arr) if bf16 else np.ascontiguousarray(arr, dtype="<f4")
    if kind == "FP32":
        return "FP32", values
    if kind == "FP16":
        if bf16 is False and arr.dtype == np.float16:
            return "FP16", np.ascontiguousarray(arr, dtype="<f2")
        # float32 values of magnitude >= 65520 round to infinity in float16
        if values.size and float(np.max(np.abs(values))) >= 65520.0 and np.isfinite(values).all():
            raise ValueError("a value exceeds float16's range (max 65504): upload as 'bf16' or 'fp32'")
        with np.errstate(over="ignore"):
            return "FP16", values.astype("<f2")
    # BF16
    if bf16:
        return "BF16", np.ascontiguousarray(arr, dtype="<u2")
    bits = f32_to_bf16_bits(values)
    # finite float32 values that round to bfloat16 infinity: magnitude bits 0x7F80
    if values.size and int(np.max(bits & np.uint16(0x7FFF))) == 0x7F80 and np.isfinite(values).all():
        raise ValueError("a value exceeds bfloat16's range: upload as 'fp32'")
    return "BF16", bits


def decode_oip(datatype, shape, raw=None, data=None):
    """An Open Inference Protocol output as a numpy array (BF16 widened to float32).

    raw: the binary bytes (binary tensor extension) or None; data: the JSON data list.
    Raises ValueError when the byte count disagrees with shape and datatype.
    """
    if datatype not in OIP_DTYPES:
        raise ValueError("unsupported output datatype %r" % (datatype,))
    dt = OIP_DTYPES[datatype]
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if raw is not None:
        if len(raw) != count * dt.itemsize:
            raise ValueError("output of %d bytes disagrees with %s%s" % (len(raw), datatype, list(shape)))
        arr = np.frombuffer(raw, dtype=dt).reshape(shape)
    else:
        flat = np.asarray(data if data is not None else [])
        if datatype == "BF16":
            arr = np.asarray(flat, dtype="<f4").reshape(shape)
            return arr
        arr = flat.astype(dt if datatype != "BOOL" else np.bool_).reshape(shape)
    if datatype == "BF16":
        return bf16_bits_to_f32(arr).reshape(shape)
    if datatype == "BOOL":
        return arr.astype(np.bool_)
    return arr


def encode_b64(arr, dtype="float32"):
    """A /v1 b64 TENSOR {"shape", "dtype", "b64"} of arr's values in dtype (float32/float64)."""
    npdt = "<f4" if dtype == "float32" else "<f8"
    a = np.ascontiguousarray(arr, dtype=npdt)
    return {"shape": list(a.shape), "dtype": dtype,
            "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_tensor(obj, dtype=np.float32):
    """Any /v1 TENSOR form (nested list, {"shape","data"}, {"shape","dtype","b64"}) as numpy.

    Raises ValueError when the form is not recognized or sizes disagree.
    """
    if isinstance(obj, dict):
        shape = tuple(int(s) for s in obj.get("shape", ()))
        if "b64" in obj:
            src = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8"}.get(
                obj.get("dtype", "float32"))
            if src is None:
                raise ValueError("unknown b64 tensor dtype %r" % (obj.get("dtype"),))
            raw = base64.b64decode(obj["b64"])
            arr = np.frombuffer(raw, dtype=src)
            return arr.reshape(shape).astype(dtype)  # a writable copy, not a view of the bytes
        if "data" in obj:
            return np.asarray(obj["data"], dtype=dtype).reshape(shape)
        raise ValueError("tensor object without 'data' or 'b64'")
    return np.asarray(obj, dtype=dtype)
