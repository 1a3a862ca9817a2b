"""The seed example: two hand-made 7x7 filters on two real photographs.

This is the first convolutional layer every course draws: one ``Conv2D`` with two filters,
a vertical-line detector and a horizontal-line detector, run over scikit-learn's two sample
photos (a Chinese temple and a flower). Each filter produces one *feature map*; the ReLU
keeps the places where the pattern is present.

Run it from the repository root:

    python examples/seed_walkthrough.py
"""
import numpy as np

import convkit as ck

# 1. The images: a batch of 2 colour photos, (batch, height, width, channels), floats in [0, 1].
images = ck.datasets.load_sample_images()
print("images:", images.shape, images.dtype)            # (2, 427, 640, 3) float32

# 2. The layer: 2 filters of 7x7, 'same' padding (the output keeps the 427x640 size: TensorFlow
#    pads 3 pixels on every side here), ReLU. Building it for 3 input channels creates a kernel
#    of shape (7, 7, 3, 2) -- height, width, input channels, filters -- and a bias of shape (2,).
conv = ck.layers.Conv2D(filters=2, kernel_size=7, padding="same", activation="relu")
conv.build((None,) + images.shape[1:])
print("kernel shape:", conv.get_weights()[0].shape, " bias shape:", conv.get_weights()[1].shape)
print("parameters: 7*7*3*2 + 2 =", conv.count_params())  # 296

# 3. Replace the random initial weights by the two classic line detectors.
#    filters.stack copies each 7x7 pattern to the 3 colour channels, so each filter sums the
#    pattern's response over red, green and blue.
vertical, horizontal = ck.filters.vertical_line(7), ck.filters.horizontal_line(7)
print("vertical-line filter:\n", vertical.astype(int))
conv.set_weights([ck.filters.stack([vertical, horizontal], in_channels=3), np.zeros(2)])

# 4. Run it. Output size per axis with 'same' padding and stride 1 is ceil(n / 1) = n.
maps = conv(images)
print("feature maps:", maps.shape)                       # (2, 427, 640, 2)
for i, name in enumerate(ck.datasets.sample_image_names()):
    v, h = maps[i, ..., 0], maps[i, ..., 1]
    print(f"  {name:10s} vertical-line map: mean {v.mean():.3f}, max {v.max():.3f};  "
          f"horizontal-line map: mean {h.mean():.3f}, max {h.max():.3f}")

# 5. The same layer inside a model: the summary shows shapes and parameter counts computed
#    without running any data.
model = ck.Sequential([ck.layers.Input(images.shape[1:]), conv])
model.summary()
same = model.predict(images, batch_size=1)
print("model output equals the layer's:", bool(np.allclose(same, maps)))

# 6. The shape arithmetic itself, for a 'valid' layer instead: floor((427 - 7) / 1) + 1 = 421.
print("valid padding would give:",
      ck.shapes.conv_output_shape((None, 427, 640, 3), filters=2, kernel_size=7))
