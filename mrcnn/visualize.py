"""Display and save helpers for images, boxes and instance masks (classic ``visualize`` API).

Conventions: images are ``[H, W, 3]`` RGB with values in 0-255 (any dtype); boxes are
``[N, (y1, x1, y2, x2)]`` in pixels of that image (y2, x2 exclusive); instance masks are
``[H, W, N]`` bool; colours are RGB tuples with components in ``[0, 1]`` (an optional 4th, alpha,
component is ignored when tinting masks).

Differences from the classic module:

- Every drawing function returns its matplotlib ``Figure`` (the one it created, or the one that
  holds the ``ax`` it was given), so scripts can ``fig.savefig(path)``. A function that creates its
  own figure calls ``plt.show()`` only when matplotlib is in interactive mode (notebooks, IPython
  ``%matplotlib``); in a script, save or ``plt.close(fig)`` the figure yourself. In a notebook,
  end such a call with ``;`` so that the returned figure is not displayed a second time.
- :func:`apply_mask` returns a new array and never modifies its input.
- :func:`random_colors` takes an optional ``seed``.
- :func:`save_instances_figure` and :func:`save_comparison_figure` write PNGs without touching
  pyplot's global state (no figure is left open).

Backend: on a headless Linux machine (no ``DISPLAY`` / ``WAYLAND_DISPLAY``) this module selects the
non-interactive "Agg" backend at import, but only when nobody chose a backend before: not when
``MPLBACKEND`` is set (Jupyter sets it), a backend was configured (``matplotlib.use``, matplotlibrc)
or ``matplotlib.pyplot`` was already imported.
"""
import colorsys
import itertools
import logging
import os
import sys

import matplotlib
import numpy as np

__all__ = [
    "display_images", "random_colors", "apply_mask", "display_instances", "display_differences",
    "draw_rois", "draw_box", "display_top_masks", "plot_precision_recall", "plot_overlaps",
    "draw_boxes", "display_table", "display_weight_stats", "save_instances_figure",
    "save_comparison_figure",
]

logger = logging.getLogger(__name__)


def _select_backend():
    if os.environ.get("MPLBACKEND") or "matplotlib.pyplot" in sys.modules:
        return
    chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: None)()
    if chosen is not None:
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")


_select_backend()

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
from matplotlib import lines, patches  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from skimage.measure import find_contours  # noqa: E402


def _finish(fig, created):
    """Show a figure this module created, but only in interactive mode; return it."""
    if created and plt.isinteractive():
        plt.show()
    return fig


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(1, figsize=figsize)
    return fig, ax, True


# ---------------------------------------------------------------------------------- colours
def random_colors(N, bright=True, seed=None):
    """``N`` distinct colours: hues evenly spaced in HSV, then shuffled.

    Args:
        N: number of colours (>= 0).
        bright: value 1.0 if True, else 0.7.
        seed: seed of the shuffle (None: different order on each call, as classic).

    Returns:
        list of ``N`` ``(r, g, b)`` tuples of floats in ``[0, 1]``.
    """
    if int(N) != N or N < 0:
        raise ValueError(f"random_colors: N must be a non-negative integer, got {N!r}")
    N = int(N)
    brightness = 1.0 if bright else 0.7
    colors = [tuple(float(c) for c in colorsys.hsv_to_rgb(i / N, 1.0, brightness))
              for i in range(N)]
    order = np.random.default_rng(seed).permutation(N)
    return [colors[i] for i in order]


def apply_mask(image, mask, color, alpha=0.5):
    """Tint the pixels of ``mask`` with ``color``: ``image * (1 - alpha) + alpha * 255 * color``.

    Args:
        image: ``[H, W, C]`` image, values in 0-255, any dtype. Not modified.
        mask: ``[H, W]``; nonzero pixels are tinted.
        color: at least ``C`` components in ``[0, 1]`` (extra ones, e.g. alpha, are ignored).
        alpha: opacity of the tint.

    Returns:
        A new ``[H, W, C]`` array of the input's dtype: integer images are rounded and clipped to
        their dtype's range (classic truncated), float images stay float.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3:
        raise ValueError(f"apply_mask: image must be [H, W, C], got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"apply_mask: mask shape {mask.shape} differs from the image's "
                         f"[H, W] = {image.shape[:2]}")
    channels = image.shape[2]
    color = np.asarray(color, dtype=np.float64).ravel()
    if color.size < channels:
        raise ValueError(f"apply_mask: color needs {channels} components for a {channels}-channel "
                         f"image, got {tuple(color)}")
    blended = image.astype(np.float64) * (1.0 - alpha) + alpha * 255.0 * color[:channels]
    out = np.where(mask.astype(bool)[..., None], blended, image)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    if np.issubdtype(image.dtype, np.floating):
        return out.astype(image.dtype)
    return out


def _mask_outline(ax, mask, color):
    """Add one polygon patch per contour of ``mask`` [H, W]; returns how many."""
    # Padding closes the contours of masks that touch the image border.
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    contours = find_contours(padded, 0.5)
    for verts in contours:
        # (row, col) -> (x, y), undoing the padding offset.
        ax.add_patch(patches.Polygon(np.fliplr(verts) - 1, facecolor="none", edgecolor=color))
    return len(contours)


def _as_display_image(image):
    return np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------- displays
def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None):
    """Show images in a grid of ``cols`` columns, each with an optional title.

    Args:
        images: list of ``[H, W]`` or ``[H, W, 3]`` arrays. RGB images are clipped to 0-255 and
            shown as uint8 (classic); single-channel arrays are shown as they are, so that
            ``imshow`` scales them to ``cmap`` (the classic cast them to uint8 too, which wrapped
            negative or fractional values such as feature maps around).
        titles: list of strings, one per image.

    Returns:
        the Figure.
    """
    images = list(images)
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"display_images: {len(titles)} titles for {len(images)} images")
    rows = max(1, -(-len(images) // cols))
    fig = plt.figure(figsize=(14, max(1, 14 * rows // cols)))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        image = np.asarray(image)
        if image.ndim == 3:
            image = _as_display_image(image)
        elif image.dtype == bool:
            image = image.astype(np.uint8)
        ax.imshow(image, cmap=cmap, norm=norm, interpolation=interpolation)
    return _finish(fig, True)


def _check_instances(boxes, masks, class_ids, where):
    boxes = np.asarray(boxes).reshape(-1, 4) if np.size(boxes) == 0 else np.asarray(boxes)
    class_ids = np.asarray(class_ids).reshape(-1)
    n = boxes.shape[0]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must be [N, (y1, x1, y2, x2)], got {boxes.shape}")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[-1] != n:
            raise ValueError(f"{where}: masks must be [H, W, N] with N = {n} (boxes), got "
                             f"{masks.shape}")
    if class_ids.shape[0] != n:
        raise ValueError(f"{where}: {class_ids.shape[0]} class_ids for {n} boxes")
    return boxes, masks, class_ids


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                      captions=None):
    """Draw instances: dashed boxes, tinted masks with outlines, and captions.

    Args:
        image: ``[H, W, 3]`` RGB, 0-255.
        boxes: ``[N, (y1, x1, y2, x2)]`` pixels; all-zero rows (padding) are skipped.
        masks: ``[H, W, N]`` bool.
        class_ids: ``[N]`` int, indices into ``class_names``.
        scores: optional ``[N]`` confidences, shown after the class name.
        ax: axes to draw into (then no figure is created and nothing is shown).
        colors: optional list of ``N`` colours (default :func:`random_colors`).
        captions: optional list of ``N`` strings replacing "class score".

    Returns:
        the Figure holding the axes. Patches: one rectangle per box (``show_bbox``) and one
        polygon per mask contour; texts: one caption per instance.
    """
    boxes, masks, class_ids = _check_instances(boxes, masks, class_ids, "display_instances")
    n = boxes.shape[0]
    if n == 0:
        print("\n*** No instances to display *** \n")
    for name, values in (("scores", scores), ("colors", colors), ("captions", captions)):
        if values is not None and len(values) != n:
            raise ValueError(f"display_instances: {len(values)} {name} for {n} instances")
    fig, ax, created = _new_axes(ax, figsize)
    colors = colors if colors is not None else random_colors(n)

    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.asarray(image)
    for i in range(n):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # padding, or an instance cropped out of the image
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                                           linestyle="dashed", edgecolor=color, facecolor="none"))
        if captions is None:
            label = class_names[int(class_ids[i])]
            score = scores[i] if scores is not None else None
            caption = f"{label} {score:.3f}" if score is not None else label
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        if masks is not None:
            if show_mask:
                masked_image = apply_mask(masked_image, masks[:, :, i], color)
            _mask_outline(ax, masks[:, :, i], color)
    ax.imshow(_as_display_image(masked_image))
    return _finish(fig, created)


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                        pred_score, pred_mask, class_names, title="", ax=None, show_mask=True,
                        show_box=True, iou_threshold=0.5, score_threshold=0.5):
    """Ground truth (green) and predictions (red) on one image, matched by mask IoU.

    Prediction captions are "score / IoU" (the IoU of its match, or its best IoU when unmatched).
    Arguments as :func:`mrcnn.eval.metrics.compute_matches`; returns the Figure.
    """
    from mrcnn.eval.metrics import compute_matches

    # compute_matches indexes predictions in score order; sort here so captions line up.
    order = np.argsort(np.asarray(pred_score))[::-1]
    pred_box, pred_class_id = np.asarray(pred_box)[order], np.asarray(pred_class_id)[order]
    pred_score, pred_mask = np.asarray(pred_score)[order], np.asarray(pred_mask)[..., order]
    gt_match, pred_match, overlaps = compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    n_gt, n_pred = len(gt_match), len(pred_match)
    colors = [(0, 1, 0, .8)] * n_gt + [(1, 0, 0, 1)] * n_pred
    class_ids = np.concatenate([np.asarray(gt_class_id)[:n_gt], pred_class_id[:n_pred]])
    scores = np.concatenate([np.zeros([n_gt]), pred_score[:n_pred]])
    boxes = np.concatenate([np.asarray(gt_box)[:n_gt].reshape(-1, 4),
                            pred_box[:n_pred].reshape(-1, 4)])
    masks = np.concatenate([np.asarray(gt_mask)[..., :n_gt], pred_mask[..., :n_pred]], axis=-1)
    captions = [""] * n_gt
    for i in range(n_pred):
        if pred_match[i] > -1:
            iou = overlaps[i, int(pred_match[i])]
        else:
            iou = overlaps[i].max() if overlaps.shape[1] else 0.0
        captions.append(f"{pred_score[i]:.2f} / {iou:.2f}")
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(image, boxes, masks, class_ids, class_names, scores, ax=ax,
                             show_bbox=show_box, show_mask=show_mask, colors=colors,
                             captions=captions, title=title)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10):
    """Show up to ``limit`` random ROIs (dashed, gray for background), their refined boxes and masks.

    Args:
        rois, refined_rois: ``[N, (y1, x1, y2, x2)]`` pixels.
        mask: ``[N, mh, mw]`` soft masks, one per ROI (already of the ROI's class).
        class_ids: ``[N]`` int; 0 = background ROI.

    Prints the positive/negative ROI counts (classic); returns the Figure.
    """
    from mrcnn.ops.masks import unmold_mask

    rois, refined_rois = np.asarray(rois), np.asarray(refined_rois)
    class_ids = np.asarray(class_ids)
    ids = np.arange(rois.shape[0], dtype=np.int32)
    if rois.shape[0] > limit:
        ids = np.random.default_rng().choice(ids, limit, replace=False)
    fig, ax = plt.subplots(1, figsize=(12, 12))
    colors = random_colors(len(ids))
    # Margins in proportion to the image (the classic's fixed 20-50 px dwarfed small images).
    margin = max(2, image.shape[0] // 10)
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")

    masked_image = np.asarray(image)
    for color, roi_id in zip(colors, ids):
        class_id = int(class_ids[roi_id])
        y1, x1, y2, x2 = rois[roi_id][:4]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                       edgecolor=color if class_id else "gray",
                                       facecolor="none", linestyle="dashed"))
        if class_id:
            ry1, rx1, ry2, rx2 = refined_rois[roi_id][:4]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11,
                    backgroundcolor="none")
            full = unmold_mask(mask[roi_id], rois[roi_id][:4].astype(np.int32), image.shape)
            masked_image = apply_mask(masked_image, full, color)
    ax.imshow(_as_display_image(masked_image))
    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    print("Positive Ratio: {:.2f}".format(positives / max(1, class_ids.shape[0])))
    return _finish(fig, True)


def draw_box(image, box, color):
    """Draw a 2-pixel box outline into ``image`` **in place** (classic) and return it.

    Args:
        image: ``[H, W, C]`` array, modified.
        box: ``(y1, x1, y2, x2)`` int pixels.
        color: value(s) assigned to the outline pixels (e.g. ``(255, 0, 0)``).
    """
    y1, x1, y2, x2 = (int(v) for v in box)
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


def display_top_masks(image, mask, class_ids, class_names, limit=4):
    """Show the image and, per class, the union of its instance masks for the ``limit`` classes
    with the largest mask area.

    Args:
        mask: ``[H, W, N]`` bool; class_ids: ``[N]`` int.

    Returns:
        the Figure.
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids)
    to_display = [image]
    titles = ["H x W={}x{}".format(image.shape[0], image.shape[1])]
    unique_class_ids = np.unique(class_ids)
    areas = [np.sum(mask[:, :, class_ids == c]) for c in unique_class_ids]
    top_ids = [c for a, c in sorted(zip(areas, unique_class_ids), key=lambda r: -r[0]) if a > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        selected = mask[:, :, class_ids == class_id]
        # Number the instances 1..k so they get distinct shades.
        to_display.append(np.sum(selected * np.arange(1, selected.shape[-1] + 1), axis=-1))
        titles.append(class_names[int(class_id)] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r")


def plot_precision_recall(AP, precisions, recalls):
    """Plot a precision-recall curve (from :func:`mrcnn.eval.metrics.compute_ap`); returns the
    Figure."""
    fig, ax = plt.subplots(1)
    ax.set_title("Precision-Recall Curve. AP@50 = {:.3f}".format(AP))
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    return _finish(fig, True)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names,
                  threshold=0.5):
    """Grid of IoUs between predictions (rows) and ground truth (columns); cells above
    ``threshold`` read "match" (same class) or "wrong". Class id 0 (padding) is dropped.
    Returns the Figure."""
    gt_class_ids = np.asarray(gt_class_ids)
    pred_class_ids = np.asarray(pred_class_ids)
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    overlaps = np.asarray(overlaps)
    fig, ax = plt.subplots(1, figsize=(12, 10))
    ax.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    ax.set_yticks(np.arange(len(pred_class_ids)))
    ax.set_yticklabels(["{} ({:.2f})".format(class_names[int(c)], pred_scores[i])
                        for i, c in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)))
    ax.set_xticklabels([class_names[int(c)] for c in gt_class_ids], rotation=90)
    middle = overlaps.max() / 2.0 if overlaps.size else 0.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        text = ""
        if overlaps[i, j] > threshold:
            text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = ("white" if overlaps[i, j] > middle
                 else "black" if overlaps[i, j] > 0 else "grey")
        ax.text(j, i, "{:.3f}\n{}".format(overlaps[i, j], text), horizontalalignment="center",
                verticalalignment="center", fontsize=9, color=color)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    fig.tight_layout()
    return _finish(fig, True)


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None,
               visibilities=None, title="", ax=None):
    """Draw boxes and/or refined boxes (joined by a line), masks and captions.

    Args:
        boxes, refined_boxes: ``[N, (y1, x1, y2, x2)]`` pixels; at least one is required.
        masks: ``[H, W, N]`` bool; captions: ``N`` strings.
        visibilities: ``N`` values in {0, 1, 2}: 0 gray dotted and faint, 1 coloured dotted,
            2 coloured solid (default 1).

    Returns:
        the Figure.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: give boxes, refined_boxes or both")
    n = len(boxes) if boxes is not None else len(refined_boxes)
    fig, ax, created = _new_axes(ax, (12, 12))
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.asarray(image)
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility == 0:
            color, style, alpha = "gray", "dotted", 0.5
        elif visibility == 1:
            color, style, alpha = colors[i], "dotted", 1
        else:
            color, style, alpha = colors[i], "solid", 1
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha,
                                           linestyle=style, edgecolor=color, facecolor="none"))
        if refined_boxes is not None and visibility > 0:
            ry1, rx1, ry2, rx2 = refined_boxes[i].astype(np.int32)
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        if captions is not None:
            cy, cx = (refined_boxes[i][:2] if refined_boxes is not None else boxes[i][:2])
            ax.text(cx, cy, captions[i], size=11, verticalalignment="top", color="w",
                    backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            masked_image = apply_mask(masked_image, masks[:, :, i], color
                                      if not isinstance(color, str)
                                      else matplotlib.colors.to_rgb(color))
            _mask_outline(ax, masks[:, :, i], color)
    ax.imshow(_as_display_image(masked_image))
    return _finish(fig, created)


def _table_html(table):
    rows = "".join("<tr>" + "".join("<td>{:40}</td>".format(str(col)) for col in row) + "</tr>"
                   for row in table)
    return "<table>" + rows + "</table>"


def display_table(table):
    """Show a table (list of rows, each a list of values): as HTML in IPython/Jupyter, else as
    aligned plain text on stdout."""
    table = [list(row) for row in table]
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
        if get_ipython() is not None:
            display(HTML(_table_html(table)))
            return
    except ImportError:
        pass
    widths = [max(len(str(row[c])) for row in table if c < len(row))
              for c in range(max((len(r) for r in table), default=0))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def display_weight_stats(model):
    """Table of min/max/std of every weight of a ``MaskRCNN``-like object (``.keras_model``).

    Flags weights that are constant ("dead?", biases excepted since they may legitimately be
    constant) or larger than 1000 in magnitude ("Overflow?"). Shows it with
    :func:`display_table` and returns the rows (header first).
    """
    if hasattr(model, "get_trainable_layers"):
        layers = model.get_trainable_layers()
    else:
        layers = [layer for layer in model.keras_model.layers if layer.weights]
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for layer in layers:
        for variable, value in zip(layer.weights, layer.get_weights()):
            name = getattr(variable, "path", None) or variable.name
            alert = ""
            if value.size and value.min() == value.max() and not name.endswith("bias"):
                alert += " *** dead?"
            if value.size and (abs(value.min()) > 1000 or abs(value.max()) > 1000):
                alert += " *** Overflow?"
            stats = (value.min(), value.max(), value.std()) if value.size else (0.0, 0.0, 0.0)
            table.append([name + alert, str(value.shape), "{:+9.4f}".format(stats[0]),
                          "{:+10.4f}".format(stats[1]), "{:+9.4f}".format(stats[2])])
    display_table(table)
    return table


# ------------------------------------------------------------------------------------ files
def _class_colors(class_names):
    """One fixed colour per class, so the same class looks the same in every panel and file."""
    return random_colors(max(1, len(class_names)), seed=0)


def _draw_panel(ax, image, boxes, masks, class_ids, class_names, scores, title, palette):
    boxes, masks, class_ids = _check_instances(boxes, masks, class_ids, title or "panel")
    if boxes.shape[0] == 0:
        # An empty panel is expected here (no detections); skip display_instances' message.
        height, width = image.shape[:2]
        ax.set_ylim(height + 10, -10)
        ax.set_xlim(-10, width + 10)
        ax.axis("off")
        ax.set_title(title)
        ax.imshow(_as_display_image(image))
        return
    colors = [palette[int(c) % len(palette)] for c in class_ids]
    display_instances(image, boxes, masks, class_ids, class_names, scores=scores, title=title,
                      ax=ax, colors=colors)


def save_instances_figure(path, image, boxes, masks, class_ids, class_names, scores=None,
                          title="", figsize=(8, 8), dpi=100):
    """Draw instances as :func:`display_instances` (colours by class) and write a PNG.

    The file is ``figsize * dpi`` pixels (800 x 800 by default). No pyplot figure is created.
    Returns ``path``.
    """
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    _draw_panel(ax, image, boxes, masks, class_ids, class_names, scores, title,
                _class_colors(class_names))
    fig.savefig(path, dpi=dpi)
    return path


def save_comparison_figure(path, image, gt, pred, class_names, title="", figsize=(16, 8),
                           dpi=100):
    """Ground truth (left) and prediction (right) side by side, written to a PNG.

    Args:
        path: output file (PNG, or any format matplotlib infers from the suffix).
        image: ``[H, W, 3]`` RGB, 0-255.
        gt: ``(boxes [N, 4], masks [H, W, N] bool, class_ids [N])``.
        pred: ``(boxes [M, 4], masks [H, W, M] bool, class_ids [M], scores [M])``, e.g. from
            ``MaskRCNN.detect``: ``(r["rois"], r["masks"], r["class_ids"], r["scores"])``.
        class_names: names indexed by class id (``dataset.class_names``).
        title: figure title above both panels.

    Each class has one colour in both panels. The file is ``figsize * dpi`` pixels
    (1600 x 800 by default). No pyplot figure is created. Returns ``path``.
    """
    if len(gt) != 3:
        raise ValueError(f"save_comparison_figure: gt must be (boxes, masks, class_ids), got "
                         f"{len(gt)} items")
    if len(pred) != 4:
        raise ValueError(f"save_comparison_figure: pred must be (boxes, masks, class_ids, "
                         f"scores), got {len(pred)} items")
    palette = _class_colors(class_names)
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    left, right = fig.subplots(1, 2)
    _draw_panel(left, image, *gt, class_names, None, f"Ground truth ({len(gt[2])})", palette)
    _draw_panel(right, image, *pred[:3], class_names, pred[3],
                f"Prediction ({len(pred[2])})", palette)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=dpi)
    return path
