# `bitnet convert` / `bitnet gen-model` through the CLI: kit HF folders converted
# to every type pass the logits conformance check, match the kit GGUF layouts,
# re-quantize losslessly, and damaged inputs leave no output file.
add_test(NAME convert_cli
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/convert/check_convert.py
                 --bitnet ${BITNET_BIN} --kit ${KIT} --work ${CMAKE_BINARY_DIR}/convert-work)
set_tests_properties(convert_cli PROPERTIES PASS_REGULAR_EXPRESSION "convert: PASS" TIMEOUT 900)
