"""The map of transfer-learning categories the source article names, with standard definitions
(after Pan & Yang 2010 and Ruder 2019, :data:`SOURCES`); terms only the article uses say so.

The article lists the categories and promises a figure of how they relate, but has none; this module
holds the categories as data and draws that figure. Taught in lesson 00 (and used in lesson 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch


@dataclass(frozen=True)
class Category:
    english: str
    chinese: str
    axis: str          # "labels": what supervision exists; "method": what is transferred; "combine"
    standard: str      # the standard meaning
    article: str       # how the source article defines it (where it differs)
    lesson: str


CATEGORIES: tuple[Category, ...] = (
    Category("supervised transfer", "有监督迁移", "labels",
             "labelled source and some labelled target data: Pan & Yang's inductive transfer; "
             "pre-train then fine-tune is Ruder's sequential transfer",
             "source has inputs and labels; the target learns both (close to standard)", "06"),
    Category("unsupervised transfer", "无监督迁移", "labels",
             "Pan & Yang: no labels in source or target (e.g. clustering); in NLP also self-supervised "
             "pre-training on unlabelled text; unsupervised domain adaptation (labelled source, "
             "unlabelled target) is Pan & Yang's transductive setting",
             "'the source has no labels', typical scenario image recognition (non-standard)", "07"),
    Category("semi-supervised transfer", "半监督迁移", "labels",
             "few labelled + many unlabelled target examples (self-training, pseudo-labels)",
             "'source has partial labels, mostly noisy' -- that is learning with noisy labels", "08"),
    Category("weakly supervised transfer", "弱监督迁移", "labels",
             "article-only term; the standard one is weak supervision (弱监督): labels from noisy, "
             "programmatic sources such as labelling functions (Ratner et al. 2017)",
             "'target needs more samples to fully grasp the labels' (vague)", "09"),
    Category("feature extraction", "特征提取", "method",
             "frozen pretrained encoder turns text into vectors; a new model is trained on them",
             "close to standard", "03"),
    Category("feature matching", "特征匹配", "method",
             "in the literature: aligning source and target feature distributions (MMD, CORAL); the "
             "article's recipe -- a shared frozen backbone with a new output layer -- is a linear probe",
             "step 3 says 'fine-tune all source parameters' -- that is fine-tuning, not this", "04"),
    Category("transfer-layer learning", "迁移层学习", "method",
             "article-only term; closest standard practice: reuse the lower k pretrained layers under "
             "new upper layers trained on the target (Yosinski et al. 2014)",
             "described like feature extraction", "04"),
    Category("fine-tuning", "微调", "method",
             "initialise from the source weights and keep training some or all of them on the target",
             "'must not initialise from the source'; 'unfreeze at test time' (both wrong)", "05"),
    Category("LLM transfer", "大模型迁移", "method",
             "prompting, in-context learning, probing and LoRA on a decoder LLM", "not covered", "10"),
    Category("ensembles", "集成", "combine",
             "average, vote or stack several models' predictions", "close to standard", "11"),
    Category("distillation (knowledge -> task)", "知识 / 任务", "combine",
             "a large teacher's outputs train a small, fast student (Hinton et al. 2015)",
             "'knowledge' = source model, 'task' = target model", "12"),
)

#: Where the standard meanings come from.
SOURCES = ("Pan & Yang (2010), A Survey on Transfer Learning, IEEE TKDE 22(10)",
           "Ruder (2019), Neural Transfer Learning for Natural Language Processing, PhD thesis, NUI Galway")


def cjk_font() -> str | None:
    """Name of an installed font with Chinese glyphs, or None (figures then show English only)."""
    from matplotlib import font_manager

    keys = ("CJK", "WenQuanYi", "SimHei", "PingFang", "Heiti", "YaHei", "Source Han")
    names = sorted({f.name for f in font_manager.fontManager.ttflist})
    return next((n for n in names if any(k in n for k in keys)), None)


def draw_map(ax: Axes | None = None) -> Axes:
    """Draw the categories as a map: supervision settings (left), methods (middle), combiners (right).

    Chinese terms appear in the boxes when a CJK font is installed (used for these texts only:
    the global ``rcParams`` are left alone); the table :data:`CATEGORIES` always has them.
    """
    font = cjk_font()
    chinese = font is not None
    family = {"fontfamily": [font, "DejaVu Sans"]} if chinese else {}  # DejaVu ships with matplotlib
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.6))
    columns = {"labels": (0.02, "What labels exist?\n(the setting)", "#dbe9f6"),
               "method": (0.36, "What is transferred?\n(the method)", "#e3f1df"),
               "combine": (0.70, "Combining models", "#fbe6d4")}
    width, height = 0.27, 0.085
    for axis, (x, title, colour) in columns.items():
        ax.text(x + width / 2, 0.97, title, ha="center", va="top", fontsize=10, weight="bold")
        members = [c for c in CATEGORIES if c.axis == axis]
        for i, cat in enumerate(members):
            y = 0.72 - i * 0.125
            ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.01",
                                        facecolor=colour, edgecolor="0.4"))
            name = f"{cat.english} ({cat.chinese})" if chinese else cat.english
            ax.text(x + width / 2, y + height / 2, f"{name}\nlesson {cat.lesson}",
                    ha="center", va="center", fontsize=8, **family)
    ax.annotate("", xy=(0.355, 0.5), xytext=(0.295, 0.5),
                arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(0.325, 0.53, "any\nsetting\nuses\na method", ha="center", va="bottom", fontsize=7, color="0.3")
    ax.annotate("", xy=(0.695, 0.5), xytext=(0.635, 0.5),
                arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(0.665, 0.53, "combine\ntrained\nmodels", ha="center", va="bottom", fontsize=7, color="0.3")
    ax.text(0.5, 0.0, "Foundation for all: a pretrained source model (knowledge"
            + (", 知识" if chinese else "") + ") adapted to a target task" + (" (任务)" if chinese else ""),
            ha="center", va="bottom", fontsize=9, style="italic", **family)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title("Map of transfer-learning categories in this course"
                 + (" (迁移学习)" if chinese else ""), **family)
    return ax
