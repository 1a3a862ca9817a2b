"""Shared pieces of the explorer tests: small models, crafted files, a server in a thread."""
import io
import struct
import threading
import zlib
from contextlib import contextmanager

import numpy as np


def window_model(seed: int = 3):
    """A Sequential model touching every window rule the explorer draws: 'same' with stride,
    explicit reflect pads, dilation with groups, max and average pooling with padding and
    ceil_mode, depthwise convolution, then a softmax head."""
    import convkit as ck
    L = ck.layers
    ck.set_seed(seed)
    model = ck.Sequential([
        L.Input((13, 11, 2)),
        L.Conv2D(4, 3, strides=2, padding="same", activation="tanh", name="same_s2"),
        L.Conv2D(4, 3, padding=((1, 0), (2, 1)), padding_mode="reflect", name="reflect"),
        L.MaxPooling2D(3, strides=2, padding="same", name="max_same"),
        L.Conv2D(6, 2, dilation_rate=(1, 2), groups=2, padding=1, activation="relu",
                 name="dilated_groups"),
        L.AveragePooling2D(2, strides=1, padding=1, name="avg_pad"),
        L.DepthwiseConv2D(2, depth_multiplier=2, name="depthwise"),
        L.MaxPooling2D(2, ceil_mode=True, name="max_ceil"),
        L.Flatten(name="flatten"),
        L.Dense(5, activation="softmax", name="head"),
    ], name="windows")
    # non-zero biases so the bias is part of every checked sum
    for layer in model.layers:
        if getattr(layer, "use_bias", False):
            weights = layer.get_weights()
            weights[-1] = np.linspace(-0.3, 0.3, weights[-1].size).astype(np.float32)
            layer.set_weights(weights)
    return model


def png_bytes(array, mode=None) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(size: int = 20000) -> bytes:
    """A valid 1-bit grey PNG of size x size pixels: ~50 KB on disk, 400 MB once decoded."""
    row = b"\x00" * (1 + size // 8)              # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(size)) + compressor.flush()
    header = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) +
            _chunk(b"IEND", b""))


@contextmanager
def running_server(explorer, images=()):
    """An explorer server on a free 127.0.0.1 port in a thread; yields its base URL."""
    from convkit.explore import ExplorerState
    from convkit.explore.server import make_server
    server = make_server(ExplorerState(explorer, images))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
