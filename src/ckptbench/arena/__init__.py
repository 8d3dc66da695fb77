"""The blind A/B arena: a person's own votes as a scorer.

``ckptbench arena`` serves pairs of images of the same case and seed from two checkpoints, names hidden and
sides randomised (``server``, ``pairs``); every vote is a row of the store's ``votes`` table (``votes``);
``analysis`` turns votes into a Bradley–Terry ranking with ties (Davidson's model, ``bradley_terry``) and
measures how well each automatic scorer agrees with them. docs/arena.md describes the method.
"""
