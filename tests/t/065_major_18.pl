# The version matrix on PostgreSQL 18 (tests/t/lib/PgarkMatrix.pm says what it covers);
# skipped unless 18 is in PGARK_TEST_MAJORS (default: every supported major).
use strict;
use warnings;

use PgarkMatrix;

major_scenario(18);
