# The version matrix on PostgreSQL 16 (tests/t/lib/PgarkMatrix.pm says what it covers);
# skipped unless 16 is in PGARK_TEST_MAJORS (default: every supported major).
use strict;
use warnings;

use PgarkMatrix;

major_scenario(16);
