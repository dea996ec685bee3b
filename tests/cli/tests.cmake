# `bitnet run` and `bitnet chat` through the CLI (scripts in tests/cli/).
# Greedy generation reproduces the reference continuations up to the first
# near-tie, for both kit models and every file format (one test per model so
# that ctest -j runs them side by side).
foreach(kitmodel tiny-bitnet tiny-llama-ternary)
  add_test(NAME cli_generate_${kitmodel}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/cli/check_generate.py
                   --bitnet ${BITNET_BIN} --kit ${KIT} --model ${kitmodel})
  set_tests_properties(cli_generate_${kitmodel} PROPERTIES PASS_REGULAR_EXPRESSION "generate: PASS" TIMEOUT 900)
endforeach()
# Options, limits and one-line errors of `bitnet run`.
add_test(NAME cli_run
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/cli/check_run.py
                 --bitnet ${BITNET_BIN} --model ${KIT}/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf)
set_tests_properties(cli_run PROPERTIES PASS_REGULAR_EXPRESSION "run: PASS")
# `bitnet chat` through a pipe: two turns, /reset, /exit, a context that fills.
add_test(NAME cli_chat
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/cli/check_chat.py
                 --bitnet ${BITNET_BIN} --model ${KIT}/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf)
set_tests_properties(cli_chat PROPERTIES PASS_REGULAR_EXPRESSION "chat: PASS")
