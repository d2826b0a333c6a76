from churnwatch.cli import main

main()
