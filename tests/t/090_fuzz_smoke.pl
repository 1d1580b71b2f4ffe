# The libFuzzer harnesses of tests/fuzz, built over the sanitizer build's library
# (check-local builds them), each run for a few seconds: every seed and regression input
# of tests/fuzz/corpus/NAME must pass, and a short run of new inputs must find nothing.
# What this catches is a harness that stopped building or a regression input that
# crashes again; the long runs are `make fuzz`'s (README, "Fuzzing").
use strict;
use warnings;

use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{PGARK_FUZZ_SMOKE_SECONDS} // 2;
my $root = $ENV{PGARK_ROOT} or die "PGARK_ROOT is not set";
my $build = $ENV{PGARK_BUILD} or die "PGARK_BUILD is not set";
my $bindir = "$build-asan/tests/fuzz";

opendir(my $d, "$root/tests/fuzz") or die "tests/fuzz: $!";
my @names = sort map { /^fuzz_(\w+)\.c$/ ? $1 : () } readdir($d);
closedir($d);
ok(@names >= 14, scalar(@names) . ' harnesses in tests/fuzz');

my $scratch = tempdir('pgark-fuzz-XXXXXX', TMPDIR => 1, CLEANUP => 1);
for my $name (@names)
{
	my $bin = "$bindir/fuzz_$name";
	if (!-x $bin)
	{
		fail("fuzz_$name is built ($bin)");
		next;
	}
	my $seeds = "$root/tests/fuzz/corpus/$name";
	opendir(my $sd, $seeds) or die "$seeds: $!";
	my $nseeds = grep { !/^\./ } readdir($sd);
	closedir($sd);
	ok($nseeds > 0, "fuzz_$name has seeds");
	my $work = "$scratch/$name";
	mkdir $work or die "$work: $!";
	my $log = "$scratch/$name.log";
	my $rc = system("$bin -max_total_time=$seconds -timeout=20 -rss_limit_mb=2048 "
		  . "-artifact_prefix=$scratch/$name- $work $seeds >$log 2>&1");
	my $text = slurp_file($log);
	if (!is($rc, 0, "fuzz_$name: seeds and $seconds s of new inputs pass"))
	{
		my @lines = grep { $_ !~ /^#\d+\s/ } split /\n/, $text;
		splice(@lines, 0, @lines - 40) if @lines > 40;
		diag(join("\n", @lines));
	}
	like($text, qr/INITED/, "fuzz_$name ran its corpus");
}

done_testing();
