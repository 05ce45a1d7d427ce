/* rownorm.cl: row-wise normalizations (layer norm, RMS norm, group norm).
 * Kernels arrive with the normalization family. */
