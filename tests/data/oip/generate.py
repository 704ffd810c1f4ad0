#!/usr/bin/env python3
"""Writes the data-driven cases of tests/codec/test_oip_framing.c into this folder.

Each case is a tiny Open Inference Protocol request (B=1, A=2, C=3) described as
JSON: "header" (the JSON header; or "header_text", raw), "binary" (the tensors
appended after the header, in order: {"dtype", "values"}, values "nan"/"inf"
allowed), optional "header_length" ("exact" by default, "absent", or
{"delta": n} added to the exact length), "append_hex" (raw bytes appended),
"truncate" (bytes cut from the end), "expect" ("ok" or an error code name),
"message" (a substring of the error detail) and, for "ok", "check" (fields of
the parsed request the test compares).  Run it after changing a case here.
"""
import json, copy, os
OUT=os.path.dirname(os.path.abspath(__file__))
LOC=[0.1,-0.2,0.3,0.05, -0.1,0.2,0.0,0.15]
CONF=[1.0,0.5,-0.5, 0.25,2.0,-1.0]
ANCH=[0.0,0.0,0.5,0.5, 0.5,0.5,1.0,1.0]
BOX=[0.1,0.1,0.45,0.5]

def inp(name, dtype, shape, values, binary=True):
    t={"name":name,"shape":shape,"datatype":dtype}
    return (t, values, binary)

def base(binary=True, preset=False):
    ins=[inp("loc","FP32",[1,2,4],LOC,binary), inp("conf","FP32",[1,2,3],CONF,binary)]
    if not preset: ins.append(inp("anchors","FP32",[2,4],ANCH,binary))
    ins += [inp("gt_boxes","FP32",[1,4],BOX,binary), inp("gt_labels","INT32",[1],[1],binary),
            inp("gt_counts","INT32",[1],[1],binary)]
    return ins

SIZES={"FP32":4,"FP16":2,"BF16":2,"FP64":8,"INT32":4,"INT64":8,"BOOL":1,"UINT8":1,"INT8":1}
import re
def compact(c):
    text=json.dumps(c,indent=1)
    # lists of scalars on one line
    def join(m):
        inner=re.sub(r'\s*\n\s*',' ',m.group(0))
        return inner.replace('[ ','[').replace(' ]',']')
    return re.sub(r'\[[^\[\]{}]*\]', join, text)

def case(name, ins, expect, message=None, params=None, outputs=None, extra=None, about="", **kw):
    header={"inputs":[]}
    binary=[]
    for t,values,b in ins:
        t=copy.deepcopy(t)
        if b:
            n=1
            for d in t["shape"]: n*=d
            size=n*SIZES.get(t["datatype"],4) if "size" not in kw.get("sizes",{}).get(t["name"],{}) else kw["sizes"][t["name"]]["size"]
            t.setdefault("parameters",{})["binary_data_size"]=size
            # bytes of an unknown datatype: written as FP32 (its declared size assumes 4)
            binary.append({"dtype":t["datatype"] if t["datatype"] in SIZES else "FP32","values":values})
        else:
            t["data"]=values
        header["inputs"].append(t)
    if params is not None: header["parameters"]=params
    if outputs is not None: header["outputs"]=outputs
    if extra: header.update(extra)
    if kw.get("drop_binary"): binary=[]
    c={"about":about,"header":header,"binary":binary,"expect":expect}
    if message: c["message"]=message
    for k in ("header_length","append_hex","truncate","header_text","check"):
        if k in kw: c[k]=kw[k]
    with open(os.path.join(OUT,name+'.json'),'w') as f:
        f.write(compact(c)+'\n')

def mod(ins, name, **changes):
    out=[]
    for t,v,b in ins:
        if t["name"]==name:
            t=copy.deepcopy(t)
            for k,val in changes.items():
                if k=="values": v=val
                elif k=="binary": b=val
                else: t[k]=val
        out.append((t,v,b))
    return out

# ---- valid
case("ok_binary", base(), "ok", about="every input binary FP32/INT32", check={"in_place_aligned":4,"num_outputs":9,"binary":False})
case("ok_json", base(False), "ok", about="every input as JSON data", check={"in_place_aligned":0})
J=base(False)
J=mod(J,"loc",values=[[[0.1,-0.2,0.3,0.05],[-0.1,0.2,0.0,0.15]]])
J=mod(J,"anchors",values=[[0.0,0.0,0.5,0.5],[0.5,0.5,1.0,1.0]])
case("ok_json_nested", J, "ok", about="nested JSON data as the shape says")
case("ok_mixed_preset_none", base(True)[:2]+base(False)[2:], "ok", about="binary loc/conf, JSON rest")
B=mod(base(),"loc",datatype="FP16"); B=mod(B,"conf",datatype="BF16")
case("ok_half_inputs", B, "ok", about="FP16 loc, BF16 conf")
B=mod(base(),"gt_labels",datatype="INT64")
case("ok_int64_labels", B+[inp("gt_difficult","BOOL",[1],[0])], "ok", about="INT64 labels and BOOL difficult",
     params={"use_difficult":False,"variance_center":0.1,"variance_size":0.2,"bipartite":"per_gt","gradient_datatype":"FP16","binary_data_output":True,"priority":0},
     check={"in_place_aligned":6,"gradient_datatype":"FP16","binary":True,"use_difficult":False,"bipartite":1,"variances":[0.1,0.2]})
case("ok_outputs_subset", base(), "ok", outputs=[{"name":"loss"},{"name":"grad_conf_rows","parameters":{"binary_data":True}},{"name":"grad_conf_values"}],
     extra={"id":"req-7","model_name":"multibox_loss"}, about="outputs subset, id echoed",
     check={"id":"req-7","outputs":[["loss",False],["grad_conf_rows",True],["grad_conf_values",False]]})
case("ok_four_variances", base(), "ok", params={"variance_cx":0.1,"variance_cy":0.1,"variance_w":0.2,"variance_h":0.25,"binary_data_output":True},
     outputs=[{"name":"loss"},{"name":"grad_loc","parameters":{"binary_data":False}}],
     check={"variances":[0.1,0.1,0.2,0.25],"outputs":[["loss",True],["grad_loc",False]]})

# ---- 400 framing
case("frame_header_length_beyond_body", base(), "bad_framing", "beyond", header_length={"delta":1000})
case("frame_size_disagrees", base(), "bad_framing", "inputs[conf]: binary_data_size 20 disagrees with shape [1,2,3] of FP32 (24 bytes)", sizes={"conf":{"size":20}})
case("frame_past_end", base(), "bad_framing", "runs past the end", truncate=4)
case("frame_trailing_bytes", base(), "bad_framing", "3 trailing bytes", append_hex="010203")
case("frame_unknown_datatype", mod(base(),"conf",datatype="FP8"), "bad_framing", "inputs[conf]: unknown datatype \"FP8\"")
case("frame_unknown_datatype_unknown_input", base()+[inp("extra","FP8",[1],[0.0])], "bad_framing", "unknown datatype", about="framing is judged before names")
case("frame_trailing_before_422", base()+[inp("extra","FP32",[1],[0.0])], "bad_framing", "trailing", append_hex="00", about="trailing bytes win over an unknown input")
D=base(); t,v,b=D[0]; t=copy.deepcopy(t); t["data"]=LOC; D[0]=(t,v,b)
case("frame_data_and_binary", D, "bad_framing", "inputs[loc]: has both \"data\" and parameters.binary_data_size")
case("frame_binary_without_header", base(), "bad_framing", "no Inference-Header-Content-Length", header_length="absent",
     drop_binary=True, about="binary_data_size on an all-JSON body")
case("frame_bytes_without_header", base(), "malformed_json", "inference header", header_length="absent",
     about="without the header length, the tensor bytes are taken as JSON")
case("frame_negative_size", base(), "bad_framing", "negative", sizes={"gt_counts":{"size":-4}})
case("frame_size_not_integer", base(), "bad_framing", "must be an integer", sizes={"gt_counts":{"size":"4"}})
case("frame_header_length_short", base(), "malformed_json", "inference header", header_length={"delta":-2})
case("frame_header_length_long", base(), "malformed_json", "inference header", header_length={"delta":4})
case("json_not_json", [], "malformed_json", None, header_text="{\"inputs\": [", header_length="absent")
case("json_root_array", [], "malformed_json", "must be a JSON object", header_text="[1,2]", header_length="absent")
case("json_duplicate_key", [], "malformed_json", "duplicate", header_text="{\"inputs\":[],\"inputs\":[]}", header_length="absent")

# ---- 422
case("missing_conf", [x for x in base() if x[0]["name"]!="conf"], "missing_field", "inputs: no input named conf")
case("missing_anchors", base(preset=True), "missing_field", "no input named anchors and no parameters.anchor_preset")
case("unknown_input", base()+[inp("foo","FP32",[1],[0.0])], "unknown_field", "inputs[foo]: unknown input")
case("duplicate_input", base()+[inp("loc","FP32",[1,2,4],LOC)], "unknown_field", "inputs[6]: input \"loc\" given twice (also inputs[0])")
case("loc_wrong_datatype", mod(base(),"loc",datatype="INT32"), "wrong_type", "inputs[loc]: datatype INT32 is not accepted")
case("conf_disagrees", mod(base(),"conf",shape=[1,3,2]), "shape_mismatch", "inputs[conf]: shape [1,3,2] disagrees with loc [1,2,4]")
case("loc_last_dim", mod(base(),"loc",shape=[1,1,8]), "shape_mismatch", "last dimension must be 4")
case("loc_rank", mod(base(),"loc",shape=[2,4]), "shape_mismatch", "inputs[loc]: shape [2,4] has rank 2")
case("empty_batch", mod(mod(mod(base(),"loc",shape=[0,2,4],values=[]),"conf",shape=[0,2,3],values=[]),"gt_counts",shape=[0],values=[]), "out_of_range", "B = 0")
case("counts_sum", mod(base(),"gt_counts",values=[2]), "shape_mismatch", "inputs[gt_counts]: counts sum to 2 boxes, gt_boxes has N = 1")
case("counts_negative", mod(mod(mod(mod(base(),"gt_counts",values=[-1]),"gt_boxes",shape=[0,4],values=[]),"gt_labels",shape=[0],values=[]),"loc",shape=[1,2,4]), "out_of_range", "inputs[gt_counts][0]: negative count")
case("label_range", mod(base(),"gt_labels",values=[3]), "bad_label", "inputs[gt_labels][0]: label 3 is out of range [0, 3) (image 0, box 0)")
case("label_background", mod(base(),"gt_labels",values=[0]), "bad_label", "background_label")
case("box_degenerate", mod(base(),"gt_boxes",values=[0.5,0.1,0.45,0.5]), "degenerate_box", "inputs[gt_boxes][0]: x2 <= x1")
case("box_nan", mod(base(),"gt_boxes",values=["nan",0.1,0.45,0.5]), "not_finite", "inputs[gt_boxes][0]: NaN or infinity")
case("anchor_degenerate", mod(base(),"anchors",values=[0.0,0.0,0.5,0.5, 0.5,0.5,1.0,0.5]), "degenerate_box", "inputs[anchors][1]: y2 <= y1")
case("loc_fp16_inf", mod(mod(base(),"loc",datatype="FP16"),"loc",values=[0.1,"inf",0,0,0,0,0,0]), "not_finite", "inputs[loc][0][0][1]")
case("conf_json_string", mod(base(False),"conf",values=[1,2,"x",4,5,6]), "wrong_type", "inputs[conf][0][0][2]: expected a number")
case("conf_json_count", mod(base(False),"conf",values=[1,2,3,4,5]), "shape_mismatch", "data has 5 values")
case("conf_json_ragged", mod(base(False),"conf",values=[[[1,2,3],[4,5]]]), "shape_mismatch", "elements at depth 2")
case("fp16_json_overflow", mod(mod(base(False),"conf",datatype="FP16"),"conf",values=[1,2,70000,4,5,6]), "not_finite", "beyond FP16")
case("shape_overflow", mod(base(False),"conf",shape=[100000,100000,100000]), "shape_overflow", "exceeds the limit")
case("shape_negative", mod(base(False),"conf",shape=[1,-2,3]), "out_of_range", "negative")
case("difficult_byte", base()+[inp("gt_difficult","BOOL",[1],[2])], "out_of_range", "inputs[gt_difficult][0]")
case("unknown_parameter", base(), "unknown_field", "parameters.sequence_id", params={"sequence_id":3})
case("bad_config_range", base(), "bad_config", "parameters.overlap_threshold", params={"overlap_threshold":2})
case("bad_config_enum", base(), "bad_config", "parameters.loc_loss", params={"loc_loss":"huber"})
case("bad_variance", base(), "bad_config", "parameters.variance_size", params={"variance_center":0.1,"variance_size":-1})
case("variance_half", base(), "missing_field", "parameters.variance_size", params={"variance_center":0.1})
case("variance_mixed", base(), "bad_config", "cannot be combined", params={"variance_center":0.1,"variance_size":0.2,"variance_cx":0.1})
case("preset_and_anchors", base(), "unknown_field", "parameters.anchor_preset", params={"anchor_preset":"ssd300_voc"})
case("preset_count", base(preset=True), "shape_mismatch", "ssd300_voc has 8732 anchors, loc has A = 2", params={"anchor_preset":"ssd300_voc"})
case("preset_unknown", base(preset=True), "unknown_preset", "unknown preset \"ssd1\"", params={"anchor_preset":"ssd1"})
case("gradient_datatype", base(), "bad_config", "parameters.gradient_datatype", params={"gradient_datatype":"INT8"})
case("unknown_output", base(), "unknown_field", "outputs[1]: unknown output \"grads\"", outputs=[{"name":"loss"},{"name":"grads"}])
case("duplicate_output", base(), "unknown_field", "requested twice", outputs=[{"name":"loss"},{"name":"loss"}])
case("output_classification", base(), "unknown_field", "classification", outputs=[{"name":"loss","parameters":{"classification":2}}])
case("shared_memory", mod(base(False),"loc",parameters={"shared_memory_region":"r"}), "unknown_field", "shared memory")
case("unknown_root_member", base(), "unknown_field", "unknown member \"inputz\"", extra={"inputz":[]})
case("wrong_model_name", base(), "out_of_range", "model_name", extra={"model_name":"resnet"})
case("missing_inputs", [], "missing_field", "inputs: missing", header_text="{\"id\":\"1\"}", header_length="absent")
case("input_missing_shape", [], "missing_field", "inputs[loc]: missing \"shape\"", header_text="{\"inputs\":[{\"name\":\"loc\",\"datatype\":\"FP32\",\"data\":[]}]}", header_length="absent")

