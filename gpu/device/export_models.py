"""Exports random-weight ResNet-50 and ViT-B/16 to ONNX, in float32 and float16, for the GPU run.

Weights do not matter for throughput, and the device has no pretrained ones. One seed per model,
so the float32 and float16 files hold the same weights. Every file has input `input`
[N,3,224,224] and output `logits` [N,1000] with a dynamic batch dimension; the float16 files take
and return float16 (Cascade's float16 input path).

Usage: python3 export_models.py <out dir> [resnet50 vit_b_16]
Prints one JSON line per file: {"model", "dtype", "path", "seconds", "how"} or {"model", "dtype", "error"}.
"""
import json
import os
import sys
import time

out = sys.argv[1] if len(sys.argv) > 1 else '.'
names = sys.argv[2:] or ['resnet50', 'vit_b_16']
os.makedirs(out, exist_ok=True)

try:
    import torch
    import torchvision
except Exception as e:  # the CPU fallback test runs without torch
    print(json.dumps({'error': f'torch/torchvision not available ({type(e).__name__}: {e}); no random-weight models exported'}), flush=True)
    sys.exit(3)

torch.set_grad_enabled(False)
print(json.dumps({'torch': torch.__version__, 'torchvision': torchvision.__version__, 'cuda': torch.version.cuda,
                  'cudaAvailable': torch.cuda.is_available(),
                  'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}), flush=True)


def export(model, x, path):
    """torch.onnx.export, TorchScript-based first (no onnxscript needed), then dynamo."""
    errors = []
    for dynamo in (False, True):
        try:
            kwargs = dict(input_names=['input'], output_names=['logits'], opset_version=17)
            if dynamo:
                batch = torch.export.Dim('n', min=1, max=1024)
                kwargs['dynamic_shapes'] = {'x': {0: batch}}
            else:
                kwargs['dynamic_axes'] = {'input': {0: 'n'}, 'logits': {0: 'n'}}
            torch.onnx.export(model, (x,), path, dynamo=dynamo, **kwargs)
            return 'dynamo' if dynamo else 'torchscript'
        except TypeError as e:
            if 'dynamo' in str(e) and not dynamo:  # an old torch without the dynamo argument
                try:
                    torch.onnx.export(model, (x,), path, input_names=['input'], output_names=['logits'],
                                      dynamic_axes={'input': {0: 'n'}, 'logits': {0: 'n'}}, opset_version=17)
                    return 'torchscript'
                except Exception as e2:
                    errors.append(f'torchscript: {e2}')
            else:
                errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {e}")
        except Exception as e:
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {e}")
    raise RuntimeError('; '.join(errors)[:800])


def fp16_by_conversion(src, dst):
    """Float32 ONNX → float16 ONNX with onnxruntime's converter (inputs and outputs float16 too)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    model = convert_float_to_float16(onnx.load(src), keep_io_types=False)
    onnx.save(model, dst)


for name in names:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    path32 = os.path.join(out, f'{name}-fp32.onnx')
    t = time.time()
    try:
        how = export(model, x, path32)
        print(json.dumps({'model': name, 'dtype': 'float32', 'path': path32, 'seconds': round(time.time() - t, 1), 'how': how}), flush=True)
    except Exception as e:
        print(json.dumps({'model': name, 'dtype': 'float32', 'error': str(e)[:800]}), flush=True)
        continue
    path16 = os.path.join(out, f'{name}-fp16.onnx')
    t = time.time()
    errors = []
    # A float16 model straight from torch: on the GPU if torch has one (fast, every op has a
    # half kernel), else on the CPU; then onnxruntime's converter from the float32 file.
    for device in (['cuda'] if torch.cuda.is_available() else []) + ['cpu']:
        try:
            how = export(model.to(device).half(), x.to(device).half(), path16)
            print(json.dumps({'model': name, 'dtype': 'float16', 'path': path16, 'seconds': round(time.time() - t, 1), 'how': f'{how} on {device}'}), flush=True)
            break
        except Exception as e:
            errors.append(f'torch half on {device}: {str(e)[:300]}')
    else:
        try:
            fp16_by_conversion(path32, path16)
            print(json.dumps({'model': name, 'dtype': 'float16', 'path': path16, 'seconds': round(time.time() - t, 1), 'how': 'onnxruntime float16 converter'}), flush=True)
        except Exception as e:
            errors.append(f'converter: {str(e)[:300]}')
            print(json.dumps({'model': name, 'dtype': 'float16', 'error': '; '.join(errors)}), flush=True)
    model.to('cpu').float()
