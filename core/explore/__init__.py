"""Explore a dataset through a model: every window embedded and drawn in 2-D.

    emb = embed_run(run_id)                 # a run's forward_features of its train/val/test windows
    emb = embed_data(data_config)           # before any model: inputs flattened -> PCA
    proj = project(emb, "umap", seed=0)     # (N, 2), one of PROJECTIONS ("pca", "tsne", "umap")
    emb.table.frame()                       # id, split, label, group, source, start_s per window

Label issues (`core.explore.label_issues`), channel/time/band importance
(`core.explore.importance`) and stored exclude/relabel marks (`core.explore.marks`) are
imported by their own module names. Nothing here imports streamlit.
"""
from core.explore.embed import Embedding, EmbeddingError, embed_data, embed_run, model_embedding
from core.explore.project import PROJECTIONS, Projection, ProjectionMethod, check_method, project
from core.explore.windows import SPLITS, WindowTable, split_inputs, window_origin, window_table

__all__ = ["Embedding", "EmbeddingError", "PROJECTIONS", "Projection", "ProjectionMethod", "SPLITS", "WindowTable",
           "check_method", "embed_data", "embed_run", "model_embedding", "project", "split_inputs",
           "window_origin", "window_table"]
