"""The pieces together in a minimal training loop: a softmax regression trained with the
fused loss gradient, an optimizer, metrics, callbacks and the progress bar."""
import io

import numpy as np

from convkit import callbacks, losses, metrics, optimizers
from convkit.callbacks import ProgressBarLogger


class SoftmaxRegression:
    def __init__(self, features, classes, rng):
        self.kernel = rng.standard_normal((features, classes)) * 0.01
        self.bias = np.zeros(classes)
        self.optimizer = None
        self.stop_training = False

    def get_weights(self):
        return [self.kernel.copy(), self.bias.copy()]

    def set_weights(self, weights):
        self.kernel[...], self.bias[...] = weights

    def predict(self, x):
        z = x @ self.kernel + self.bias
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)


def test_training_loop_uses_the_interfaces(rng):
    x = rng.standard_normal((96, 4))
    y = np.argmax(x[:, :3], axis=1)                            # linearly separable, 3 classes
    model = SoftmaxRegression(4, 3, rng)
    model.optimizer = optimizers.get("adam")
    model.optimizer.learning_rate = 0.05
    loss = losses.get("sparse_categorical_crossentropy")
    tracker, accuracy = metrics.Mean("loss"), metrics.get("accuracy", loss=loss)
    out = io.StringIO()
    stopper = callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=1e-3)
    cbs = callbacks.CallbackList([stopper, ProgressBarLogger(stream=out)], add_history=True,
                                 model=model, verbose=1, epochs=40, steps=3)
    cbs.on_train_begin()
    for epoch in range(40):
        cbs.on_epoch_begin(epoch)
        tracker.reset_state()
        accuracy.reset_state()
        for batch in range(3):
            xb, yb = x[batch * 32:(batch + 1) * 32], y[batch * 32:(batch + 1) * 32]
            probs = model.predict(xb)
            assert loss.fusable_with("softmax")
            dz = loss.gradient_wrt_logits(yb, probs)            # (32, 3), already / N
            grads = [xb.T @ dz, dz.sum(0)]
            model.optimizer.apply_gradients(zip(grads, [model.kernel, model.bias]))
            tracker.update_state(loss(yb, probs), sample_weight=len(xb))
            accuracy.update_state(yb, probs)
            cbs.on_train_batch_end(batch, {"loss": tracker.result(),
                                           "accuracy": accuracy.result()})
        cbs.on_epoch_end(epoch, {"loss": tracker.result(), "accuracy": accuracy.result()})
        if model.stop_training:
            break
    cbs.on_train_end()
    history = cbs.history.history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] >= 0.9
    assert model.optimizer.iterations == 3 * len(history["loss"])
    assert out.getvalue().count("Epoch ") == len(history["loss"])
