# The tree itself: every #include points down the layers of CONVENTIONS.md
# (tests/harness/layers.pl says which; a planted upward include shows it is looked at).
use strict;
use warnings;

use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $root = $ENV{PGARK_ROOT} or die "PGARK_ROOT is not set";

my $r = run_cmd([ 'perl', "$root/tests/harness/layers.pl" ]);
is($r->{stdout}, '', 'no include points up or sideways') or diag($r->{stdout});
is($r->{rc}, 0, 'layers.pl exits 0');

# The checker is not vacuous: a copy of the tree with common including repo.h fails.
my $copy = tempdir('pgark-tree-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system('cp', '-R', "$root/src", "$root/include", "$root/walreceiver", $copy) == 0
  or die "cp: $?";
mkdir "$copy/tests";
mkdir "$copy/tests/harness";
system('cp', "$root/tests/harness/layers.pl", "$copy/tests/harness/") == 0 or die "cp: $?";
open my $fh, '>>', "$copy/src/common/units.c" or die "units.c: $!";
print $fh "#include \"pgark/repo.h\"\n";
close $fh;
$r = run_cmd([ 'perl', "$copy/tests/harness/layers.pl" ]);
is($r->{rc}, 1, 'an upward include fails the check');
like($r->{stdout}, qr{^src/common/units\.c:\d+: common includes pgark/repo\.h of repo, a higher layer$}m,
	'and is named with its file and line');

done_testing();
