# Tokenizer: conformance vectors through the CLI (the kit's
# check_tokenizer.py, one test per tokenizer file so that ctest -j runs them
# side by side), a CLI tokenize -> detokenize round trip, and the benchmark
# program (it prints figures; CI only checks that it still runs).
foreach(check llama3-json llama2-json llama2-model llama3-tiktoken roundtrip)
  add_test(NAME tokenizer_cli_${check}
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/tokenizer/run_vectors.sh ${BITNET_BIN} ${SHARED} ${check})
  set_tests_properties(tokenizer_cli_${check} PROPERTIES PASS_REGULAR_EXPRESSION "tokenizer vectors: PASS"
                       TIMEOUT 900)
endforeach()

add_executable(bench_tokenize ${CMAKE_SOURCE_DIR}/tests/tokenizer/bench_tokenize.c)
target_include_directories(bench_tokenize PRIVATE ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(bench_tokenize PRIVATE bitnet_static PkgConfig::CJSON PkgConfig::PCRE2 Threads::Threads m)
target_compile_definitions(bench_tokenize PRIVATE _GNU_SOURCE BITNET_SHARED_DIR="${SHARED}")
add_test(NAME bench_tokenize_smoke COMMAND bench_tokenize --quick)
