# test_batch (a cmocka program, registered with the unit tests) once more with
# the scalar kernels, where batched and one-sequence logits must be identical.
add_test(NAME test_batch_exact COMMAND test_batch WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(test_batch_exact PROPERTIES LABELS unit ENVIRONMENT "BITNET_CPU=scalar;BITNET_TEST_EXACT=1")
