from errands.cli import main

main()
