"""Keypoints-only estimation (the image hidden) and the image mask of the cascade's condition."""

import numpy as np
import torch

from handcast.models.cascade.testing import small_cascade


def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, 256, 192, generator=g)
    kp = 40 + torch.rand(b, 21, 2, generator=g) * torch.tensor([110.0, 170.0])
    conf = torch.ones(b, 21)
    K = torch.tensor([[400.0, 0, 90.0], [0, 400.0, 130.0], [0, 0, 1]]).expand(b, 3, 3).contiguous()
    return images, kp, conf, K


def _estimate(model, images, kp, conf, K, keypoints_only):
    out = model.estimate_crops(images, kp, conf, K, 3, "ddim", 1, aggregations=("median",),
                               generator=torch.Generator().manual_seed(3), keypoints_only=keypoints_only)
    return out["aggregated"]["median"]


def test_keypoints_only_ignores_the_image_and_differs_from_image_and_keypoints(hm):
    model = small_cascade(hm, seed=2)
    images, kp, conf, K = _inputs()
    other = torch.randn(images.shape, generator=torch.Generator().manual_seed(9)) * 2
    j0, v0 = _estimate(model, images, kp, conf, K, True)
    j1, v1 = _estimate(model, other, kp, conf, K, True)
    torch.testing.assert_close(j0, j1, atol=0, rtol=0)
    torch.testing.assert_close(v0, v1, atol=0, rtol=0)
    j2, v2 = _estimate(model, images, kp, conf, K, False)
    j3, _ = _estimate(model, other, kp, conf, K, False)
    assert (j2 - j0).abs().max() > 1e-4 and (v2 - v0).abs().max() > 1e-4  # the image is used otherwise ...
    assert (j2 - j3).abs().max() > 1e-4  # ... and changes the estimate
    j4, _ = _estimate(model, None, kp, conf, K, True)  # no image at all
    torch.testing.assert_close(j0, j4, atol=0, rtol=0)


@torch.no_grad()
def test_image_mask_hides_the_image_of_masked_items_only(hm):
    model = small_cascade(hm, seed=2)
    images, kp, conf, K = _inputs()
    cond = model.joint.cond
    f0, f1 = model.backbone(images), model.backbone(torch.randn(images.shape))
    mask = torch.tensor([0.0, 1.0, 0.0])
    t0, j0 = cond(f0, kp, conf, K, image_mask=mask)
    t1, j1 = cond(f1, kp, conf, K, image_mask=mask)
    hidden = mask == 0
    torch.testing.assert_close(t0[hidden], t1[hidden], atol=0, rtol=0)
    torch.testing.assert_close(j0[hidden], j1[hidden], atol=0, rtol=0)
    assert (t0[1] - t1[1]).abs().max() > 1e-4 and (j0[1] - j1[1]).abs().max() > 1e-4
    assert float(t0[hidden][:, 1:].abs().max()) == 0.0  # the image tokens are zero, as token dropout makes them
    # no mask = all ones
    ta, ja = cond(f0, kp, conf, K)
    tb, jb = cond(f0, kp, conf, K, image_mask=torch.ones(3))
    torch.testing.assert_close(ta, tb, atol=0, rtol=0)
    torch.testing.assert_close(ja, jb, atol=0, rtol=0)


def test_joint_loss_of_masked_items_does_not_depend_on_the_image(hm):
    from handcast.diffusion import make_scheduler

    model = small_cascade(hm, seed=2)
    model.joint.eval()  # no dropout
    images, kp, conf, K = _inputs()
    joints = torch.as_tensor(np.random.default_rng(0).normal(0, 0.03, (3, 21, 3)), dtype=torch.float32)
    joints = joints - joints[:, :1]
    sched = make_scheduler("ddpm", model.diffusion)
    mask = torch.zeros(3)

    def loss(x):
        return model.joint.loss(sched, model.backbone(x), kp, conf, K, joints, torch.Generator().manual_seed(1),
                                image_mask=mask)["loss"]

    torch.testing.assert_close(loss(images), loss(torch.randn(images.shape)), atol=0, rtol=0)
