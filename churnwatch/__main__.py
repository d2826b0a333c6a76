from churnwatch.cli.main import main

main()
