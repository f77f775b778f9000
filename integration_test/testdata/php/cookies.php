<?php
// Answers with the names of the cookies the backend was sent, sorted, one
// line: what reached the application past the proxy.
require __DIR__ . '/lib.php';

$names = array_keys($_COOKIE);
sort($names);
echo implode(' ', $names), "\n";
