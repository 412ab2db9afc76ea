//! Few-shot demonstration sampling, reproducing OpenFlamingo's evaluation
//! sampler draw for draw (Python's `random` and NumPy's legacy `RandomState`).
