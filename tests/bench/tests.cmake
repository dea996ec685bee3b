# `bitnet bench` and `bitnet perplexity` through the CLI (scripts in
# tests/bench/). Benchmarks never judge speed here: the bench test checks the
# figures' consistency, the regression checker (made slower on purpose with
# the BITNET_TEST_DELAY_US hook) and Ctrl-C; the perplexity test checks the
# numbers against ones computed from the kit's reference logits.
add_test(NAME bench_cli
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/bench/check_bench.py
                 --bitnet ${BITNET_BIN} --kit ${KIT})
set_tests_properties(bench_cli PROPERTIES PASS_REGULAR_EXPRESSION "bench: PASS" TIMEOUT 600)
add_test(NAME perplexity_cli
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/bench/check_perplexity.py
                 --bitnet ${BITNET_BIN} --kit ${KIT})
set_tests_properties(perplexity_cli PROPERTIES PASS_REGULAR_EXPRESSION "perplexity: PASS" TIMEOUT 600)
# bench/run_suite.sh end to end in its --quick form (a small gen-model file
# stands in for the 2B4T-shaped one).
add_test(NAME bench_suite_smoke
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/bench/check_suite.py
                 --bitnet ${BITNET_BIN} --source ${CMAKE_SOURCE_DIR})
set_tests_properties(bench_suite_smoke PROPERTIES PASS_REGULAR_EXPRESSION "suite: PASS" TIMEOUT 900)
