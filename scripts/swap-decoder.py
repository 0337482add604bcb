#!/usr/bin/env python3
"""Give latent models the decoder of a retrained autoencoder, in place.

Every latent model (latent-diffusion, distilled-unet, the coalescers) carries a copy of the shared
autoencoder under `autoencoder.*`. `coalesce train autoencoder --init-from models/autoencoder
--decoder-only ...` retrains only the decoder, so the encoder, the latent space and `latent_scale`
stay as they were and every model trained on those latents can decode with the new decoder. This
script checks that (the model's `autoencoder.encoder.*` tensors and the autoencoder config in its
metadata must equal the new autoencoder's, byte for byte, apart from the decoder), then overwrites
the model's `autoencoder.decoder.*` tensors with the new ones. Nothing else in the file changes.

    scripts/swap-decoder.py --autoencoder models/autoencoder/autoencoder.safetensors \\
        models/latent-diffusion/latent-diffusion.safetensors models/coalescer/coalescer.safetensors ...

--check only reports whether each model's decoder already equals the autoencoder's.
"""
import argparse
import json
import os
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return data, header, 8 + n


def tensor_bytes(data, header, base, key):
    lo, hi = header[key]["data_offsets"]
    return data[base + lo:base + hi]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--autoencoder", required=True, help="the retrained autoencoder's safetensors")
    p.add_argument("--check", action="store_true", help="report only; change nothing")
    p.add_argument("models", nargs="+")
    a = p.parse_args()
    ae_data, ae_header, ae_base = read(a.autoencoder)
    ae_config = json.loads(ae_header["__metadata__"]["config"])
    failed = False
    for path in a.models:
        data, header, base = read(path)
        model_config = json.loads(header["__metadata__"]["config"]).get("autoencoder")
        problems = []
        if model_config != ae_config:
            problems.append("autoencoder config differs: %s against %s" % (model_config, ae_config))
        for key, info in ae_header.items():
            if key == "__metadata__":
                continue
            mkey = "autoencoder." + key
            if mkey not in header:
                problems.append("no tensor %s" % mkey)
            elif header[mkey]["dtype"] != info["dtype"] or header[mkey]["shape"] != info["shape"]:
                problems.append("%s is %s %s, the autoencoder's %s %s" % (mkey, header[mkey]["dtype"], header[mkey]["shape"],
                                                                        info["dtype"], info["shape"]))
            elif not key.startswith("decoder.") and tensor_bytes(data, header, base, mkey) != tensor_bytes(ae_data, ae_header, ae_base, key):
                problems.append("%s differs: another latent space" % mkey)
        extra = [k for k in header if k.startswith("autoencoder.") and k[len("autoencoder."):] not in ae_header]
        if extra:
            problems.append("tensors the autoencoder lacks: %s" % ", ".join(extra[:4]))
        if problems:
            more = " (and %d more)" % (len(problems) - 3) if len(problems) > 3 else ""
            print("%s: not swapped: %s%s" % (path, "; ".join(problems[:3]), more), file=sys.stderr)
            failed = True
            continue
        decoder = [k for k in ae_header if k.startswith("decoder.")]
        same = all(tensor_bytes(data, header, base, "autoencoder." + k) == tensor_bytes(ae_data, ae_header, ae_base, k) for k in decoder)
        if a.check or same:
            print("%s: decoder %s" % (path, "already the autoencoder's" if same else "differs from the autoencoder's"))
            continue
        out = bytearray(data)
        for k in decoder:
            lo, hi = header["autoencoder." + k]["data_offsets"]
            out[base + lo:base + hi] = tensor_bytes(ae_data, ae_header, ae_base, k)
        with open(path + ".tmp", "wb") as f:
            f.write(out)
        os.replace(path + ".tmp", path)
        print("%s: %d decoder tensors replaced" % (path, len(decoder)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
