# A conftest unit test file: never loaded as a policy.
package main

test_nothing if { false }
deny contains "loaded a _test.rego file" if { true }
