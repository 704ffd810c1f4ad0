"""The value Client.loss returns: a dict whose keys are also attributes.

Keys: loss, conf_loss, loc_loss, normalizer (floats); num_positives, num_negatives (ints);
per_image (list of dicts, one per image: "loss" always, and on the /v1 path also "conf_loss",
"loc_loss", "num_positives", "num_negatives"); grad_loc float32 [B,A,4] and grad_conf float32
[B,A,C] (None when gradients were not asked for); matches (list of int arrays, /v1 only,
when asked). No behaviour beyond attribute access.
"""


class LossResult(dict):
    """dict of the loss, its parts, counts and gradients; result.loss == result["loss"]."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __repr__(self):
        shown = ", ".join("%s=%r" % (k, self[k]) for k in
                          ("loss", "conf_loss", "loc_loss", "normalizer", "num_positives", "num_negatives")
                          if k in self)
        return "LossResult(%s)" % shown
