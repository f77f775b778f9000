<?php
// A slow page (500 ms) that keeps its session open all the time, as legacy
// code does: under the files handler it holds the session's flock throughout.
require __DIR__ . '/lib.php';

session_start();
usleep(500 * 1000);
$_SESSION['slow'] = (int)($_SESSION['slow'] ?? 0) + 1;
echo "slow\n";
