<?php
// A fast page that opens its session, as nearly every page of a legacy app
// does.
require __DIR__ . '/lib.php';

session_start();
session_write_close();
echo "fast\n";
