"""Commands that measure many runs and write results folders.

grid (points measured into one folder tree, resumable, in a time budget), speed (the
decode-bandwidth benchmark and patch ablation), reference (every engine side by side on
one GPU), evidence (what a results folder holds beside its runs), agreement (patched vs
stock logits and tokens), wheelhouse (wheels for an offline GPU host).
"""
