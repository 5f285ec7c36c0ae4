#!/usr/bin/env bash
# scikit-learn's own tests of its n_jobs code, with picklepool as joblib's default backend.
# usage: run.sh [--venv VENV] [--work DIR] [MODULE ...]
#   --venv  a venv with picklepool[test], scikit-learn and (for more of the tests) pandas
#           (default: the python on PATH)
#   --work  where the results go (default /tmp/sklearn_on_picklepool)
#   MODULE  test modules of the installed scikit-learn, dotted (default: the list below)
# The tests are the installed scikit-learn's (its wheel ships them); nothing is copied here.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=python3
WORK=/tmp/sklearn_on_picklepool
MODULES=()
while [ $# -gt 0 ]; do
    case $1 in
        --venv) PY=$2/bin/python; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        -*) echo "unknown argument $1" >&2; exit 2 ;;
        *) MODULES+=("$1"); shift ;;
    esac
done
if [ ${#MODULES[@]} -eq 0 ]; then
    # the modules whose tests pass n_jobs most often, in scikit-learn 1.9
    for m in model_selection.tests.test_search model_selection.tests.test_validation \
        ensemble.tests.test_forest ensemble.tests.test_bagging ensemble.tests.test_iforest \
        ensemble.tests.test_stacking ensemble.tests.test_voting tests.test_multiclass \
        tests.test_multioutput tests.test_pipeline tests.test_calibration tests.test_config \
        metrics.tests.test_pairwise metrics.tests.test_score_objects \
        feature_selection.tests.test_rfe feature_selection.tests.test_mutual_info \
        linear_model.tests.test_logistic linear_model.tests.test_coordinate_descent \
        linear_model.tests.test_sgd linear_model.tests.test_theil_sen \
        neighbors.tests.test_neighbors compose.tests.test_column_transformer \
        inspection.tests.test_partial_dependence inspection.tests.test_permutation_importance \
        utils.tests.test_parallel decomposition.tests.test_dict_learning \
        decomposition.tests.test_online_lda decomposition.tests.test_sparse_pca \
        manifold.tests.test_t_sne manifold.tests.test_mds gaussian_process.tests.test_gpc \
        covariance.tests.test_graphical_lasso feature_extraction.tests.test_text \
        semi_supervised.tests.test_label_propagation cluster.tests.test_mean_shift \
        callback.tests; do
        MODULES+=("sklearn.$m")
    done
fi
mkdir -p "$WORK"
cd "$WORK"
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" nice "$PY" -m pytest -p pp_default_backend \
    -p no:cacheprovider -q --timeout 600 --pyargs "${MODULES[@]}" > "$WORK/pytest.txt" 2>&1 || status=$?
tail -3 "$WORK/pytest.txt"
exit "${status:-0}"
