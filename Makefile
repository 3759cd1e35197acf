# SAM's makefile build method: `sam build` runs `make build-<LogicalId>` for each function with
# ARTIFACTS_DIR set. infra/lambda-artifact.sh builds every function binary in one cargo
# invocation (dependencies and the shared library compile once; concurrent calls wait for it
# and find everything fresh), then copies this function's bootstrap.
build-%:
	infra/lambda-artifact.sh "$*" "$(ARTIFACTS_DIR)"
